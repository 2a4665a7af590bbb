"""The Slack channel against a real HTTP receiver playing Slack's incoming webhook."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sophia.engine.dispatch import DeliveryError, PermanentDeliveryError
from sophia.engine.model import Notification
from sophia.notify.slack import SlackNotifier
from tests.fakes.receivers import HttpReceiver, Reply

WEBHOOK_PATH = "/services/T0000/B0000/XXslackSECRETtokenXX"
SECRET = "XXslackSECRETtokenXX"

NOTE = Notification(
    kind="rolled_back",
    run_id="r-7",
    version="v1.2.0",
    platform="local",
    summary="comms-mcp canary failed; traffic back on v1.1.0",
    occurred_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    severity="critical",
    stage="canary-deploy",
    service="comms-mcp",
    reason="error rate 100% > 5%",
    report_url="https://reports.example/runs/r-7",
)


@pytest.fixture
def slack() -> Iterator[HttpReceiver]:
    with HttpReceiver(default=Reply(200, "ok")) as receiver:
        yield receiver


async def test_posts_a_block_kit_message(slack: HttpReceiver) -> None:
    await SlackNotifier(slack.url(WEBHOOK_PATH)).send(NOTE)
    [request] = slack.requests
    assert (request.method, request.path) == ("POST", WEBHOOK_PATH)
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert body["text"] == "Sophia v1.2.0 rolled back on local: comms-mcp canary failed; traffic back on v1.1.0"
    header, summary, facts, reason, actions, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":rewind: Sophia v1.2.0 rolled back on local", "emoji": True},
    }
    assert summary["text"]["text"] == NOTE.summary
    assert [f["text"] for f in facts["fields"]] == [
        "*Run:*\nr-7",
        "*Version:*\nv1.2.0",
        "*Platform:*\nlocal",
        "*Outcome:*\nrolled back (rolled_back)",
        "*Severity:*\ncritical",
        "*Stage:*\ncanary-deploy",
        "*Service:*\ncomms-mcp",
        "*Occurred:*\n2026-01-01T12:00:00+00:00",
    ]
    assert reason["text"]["text"] == "*Reason:*\nerror rate 100% &gt; 5%"
    [button] = actions["elements"]
    assert (button["type"], button["url"]) == ("button", "https://reports.example/runs/r-7")
    assert "r-7" in context["elements"][0]["text"]


async def test_a_body_other_than_ok_is_a_failure(slack: HttpReceiver) -> None:
    slack.reply(Reply(200, "maintenance page"))
    with pytest.raises(DeliveryError, match="not 'ok'") as caught:
        await SlackNotifier(slack.url(WEBHOOK_PATH)).send(NOTE)
    assert not isinstance(caught.value, PermanentDeliveryError)


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (403, True), (404, True), (429, False), (500, False)])
async def test_error_statuses_are_classified_and_scrubbed(slack: HttpReceiver, status: int, permanent: bool) -> None:
    slack.reply(Reply(status, f"no_service for {WEBHOOK_PATH}"))
    with pytest.raises(DeliveryError) as caught:
        await SlackNotifier(slack.url(WEBHOOK_PATH)).send(replace(NOTE, kind="started"))
    assert isinstance(caught.value, PermanentDeliveryError) is permanent
    assert f"answered {status}" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


async def test_connection_failures_name_only_the_host(slack: HttpReceiver) -> None:
    dead = HttpReceiver()
    url = dead.url(WEBHOOK_PATH)
    dead.stop()  # never started: the port is closed
    with pytest.raises(DeliveryError) as caught:
        await SlackNotifier(url).send(NOTE)
    assert f"request to http://127.0.0.1:{dead.port} failed" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__context__ is None
