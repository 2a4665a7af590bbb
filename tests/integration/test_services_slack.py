"""comms-mcp against a fake Slack on 127.0.0.1 (slack_sdk's ``base_url``): the exact requests Slack receives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sophia.services.app import create_app
from tests.fakes.saas import SLACK_TOKEN, Answer, FakeApi, fake_slack, fake_slack_webhook
from tests.fakes.service_app import make_settings, serve

POST = {"channel": "#sophia-deploys", "message": "canary v1.1.0 is live", "username": "sophia"}


@pytest.fixture
def slack() -> Iterator[FakeApi]:
    with fake_slack() as fake:
        yield fake


def comms(slack: FakeApi, token: str = SLACK_TOKEN):  # type: ignore[no-untyped-def]
    settings = make_settings("comms-mcp", "comms", None, slack_bot_token=token, slack_api_url=slack.base_url + "/api/")
    return create_app(settings)


async def test_a_post_is_one_chat_post_message_with_the_bot_token(slack: FakeApi) -> None:
    async with serve(comms(slack)) as client:
        response = await client.post("/slack/post", json=POST)
        info = (await client.get("/api/info")).json()
        ready = (await client.get("/ready")).json()
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "channel": "C0SOPHIA01", "ts": "1700000000.000001",
                               "message_id": "1700000000.000001"}  # fmt: skip
    [request] = slack.requests
    assert (request.method, request.path) == ("POST", "/api/chat.postMessage")
    assert request.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    assert request.form == {"channel": "#sophia-deploys", "text": "canary v1.1.0 is live", "username": "sophia"}
    assert info["backend"] == "slack-api"
    assert ready["status"] == "ready"  # no database needed by the live backend, and Slack itself is not probed


async def test_a_429_is_retried_once_after_retry_after(slack: FakeApi) -> None:
    slack.fail_next(Answer(429, {"ok": False, "error": "ratelimited"}, (("Retry-After", "1"),)))
    async with serve(comms(slack)) as client:
        response = await client.post("/slack/post", json=POST)
    assert response.status_code == 200, response.text
    first, second = slack.requests
    assert first.form == second.form == {"channel": "#sophia-deploys", "text": POST["message"], "username": "sophia"}
    assert second.at - first.at >= 1.0  # waited as long as Slack asked


async def test_a_long_retry_after_is_passed_on_to_the_caller_without_retrying(slack: FakeApi) -> None:
    slack.fail_next(Answer(429, {"ok": False, "error": "ratelimited"}, (("Retry-After", "30"),)))
    async with serve(comms(slack)) as client:
        response = await client.post("/slack/post", json=POST)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.json() == {"ok": False, "error": "Slack is rate limiting us; retry later"}
    assert len(slack.requests) == 1


@pytest.mark.parametrize(
    ("post", "token", "status", "error"),
    [
        ({**POST, "channel": "#nowhere"}, SLACK_TOKEN, 404, "Slack has no channel by that name"),
        (POST, "xoxb-wrong-token", 502, "Slack refused the bot token (invalid_auth)"),
    ],
)
async def test_slack_errors_become_clear_answers_without_secrets(
    slack: FakeApi, post: dict[str, str], token: str, status: int, error: str
) -> None:
    async with serve(comms(slack, token)) as client:
        response = await client.post("/slack/post", json=post)
    assert response.status_code == status
    assert response.json()["ok"] is False
    assert response.json()["error"].startswith(error)
    assert token not in response.text


async def test_slack_unreachable_is_a_504(slack: FakeApi) -> None:
    settings = make_settings("comms-mcp", "comms", None, slack_bot_token=SLACK_TOKEN,
                             slack_api_url="http://127.0.0.1:9/api/")  # fmt: skip
    async with serve(create_app(settings)) as client:
        response = await client.post("/slack/post", json=POST)
    assert response.status_code == 504
    assert response.json()["error"].startswith("Slack did not answer")


async def test_an_incoming_webhook_gets_text_username_and_channel() -> None:
    with fake_slack_webhook() as hook:
        url = hook.base_url + "/services/T0/B0/secretpath"
        settings = make_settings("comms-mcp", "comms", None, slack_webhook_url=url)
        async with serve(create_app(settings)) as client:
            response = await client.post("/slack/post", json=POST)
            info = (await client.get("/api/info")).json()
        [request] = hook.requests
    assert response.json() == {"ok": True, "channel": "#sophia-deploys", "ts": None, "message_id": ""}
    assert request.path == "/services/T0/B0/secretpath"
    assert request.json == {"text": POST["message"], "username": "sophia", "channel": "#sophia-deploys"}
    assert info["backend"] == "slack-webhook"
    assert "secretpath" not in str(info)


async def test_sandbox_backend_wins_when_asked_for_even_with_a_token(slack: FakeApi, database_url: str) -> None:
    settings = make_settings("comms-mcp", "comms", database_url, backend="sandbox", slack_bot_token=SLACK_TOKEN,
                             slack_api_url=slack.base_url + "/api/")  # fmt: skip
    async with serve(create_app(settings)) as client:
        assert (await client.post("/slack/post", json=POST)).status_code == 200
        assert (await client.get("/api/info")).json()["backend"] == "sandbox"
    assert slack.requests == []
