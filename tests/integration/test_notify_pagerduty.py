"""The PagerDuty channel against a real HTTP receiver playing the Events API v2."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sophia.engine.clock import FakeClock
from sophia.engine.dispatch import DeliveryError, NotificationDispatcher, PermanentDeliveryError
from sophia.engine.model import Notification
from sophia.notify.pagerduty import PagerDutyNotifier
from tests.fakes.receivers import HttpReceiver, Reply

KEY = "R0UTINGkeySECRET00000000000000ab"
ACCEPTED = Reply.json(202, {"status": "success", "message": "Event processed"})

FAILED = Notification(
    kind="rolled_back",
    run_id="r-1",
    version="v1.2.0",
    platform="local",
    summary="synthetics failed: crm-mcp task creation",
    occurred_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    severity="critical",
    stage="synthetics",
    service="crm-mcp",
    reason="POST /tasks/create answered 500",
    report_url="https://reports.example/runs/r-1",
)


@pytest.fixture
def pagerduty() -> Iterator[HttpReceiver]:
    with HttpReceiver(default=ACCEPTED) as receiver:
        yield receiver


def channel(receiver: HttpReceiver) -> PagerDutyNotifier:
    return PagerDutyNotifier(KEY, url=receiver.url("/v2/enqueue"))


async def test_trigger_then_a_later_promotion_resolves_with_the_same_dedup_keys(pagerduty: HttpReceiver) -> None:
    pd = channel(pagerduty)
    await pd.send(FAILED)
    await pd.send(replace(FAILED, run_id="r-2", kind="rollback_failed", stage="full-rollout", service=None))
    await pd.send(replace(FAILED, run_id="r-3", kind="promoted", resolves=("r-1", "r-2")))

    trigger_1, trigger_2, resolve_1, resolve_2 = (r.json for r in pagerduty.requests)
    assert all(r.path == "/v2/enqueue" and r.method == "POST" for r in pagerduty.requests)
    assert trigger_1 == {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "sophia-r-1",
        "client": "sophia release engine",
        "payload": {
            "summary": "Sophia v1.2.0 rolled back on local: synthetics failed: crm-mcp task creation",
            "source": "sophia/local",
            "severity": "error",
            "timestamp": "2026-01-01T12:00:00+00:00",
            "component": "crm-mcp",
            "group": "synthetics",
            "class": "rolled_back",
            "custom_details": {
                "run_id": "r-1",
                "version": "v1.2.0",
                "platform": "local",
                "kind": "rolled_back",
                "stage": "synthetics",
                "service": "crm-mcp",
                "reason": "POST /tasks/create answered 500",
                "report": "https://reports.example/runs/r-1",
            },
        },
        "links": [{"href": "https://reports.example/runs/r-1", "text": "Sophia run report"}],
    }
    assert (trigger_2["dedup_key"], trigger_2["payload"]["severity"]) == ("sophia-r-2", "critical")
    assert trigger_2["payload"]["component"] == "sophia"
    assert resolve_1 == {"routing_key": KEY, "event_action": "resolve", "dedup_key": trigger_1["dedup_key"]}
    assert resolve_2 == {"routing_key": KEY, "event_action": "resolve", "dedup_key": trigger_2["dedup_key"]}


async def test_info_kinds_send_nothing(pagerduty: HttpReceiver) -> None:
    pd = channel(pagerduty)
    await pd.send(replace(FAILED, kind="started"))
    d = NotificationDispatcher([pd], FakeClock(), attempt_timeout_s=1, max_attempts=2, backoff_s=0.001)
    d.publish(replace(FAILED, kind="started"))
    assert await d.drain(timeout_s=1) == []
    assert pagerduty.requests == []


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (404, True), (429, False), (500, False), (503, False)])
async def test_statuses_are_classified_and_the_key_never_leaks(
    pagerduty: HttpReceiver, status: int, permanent: bool
) -> None:
    pagerduty.reply(Reply.json(status, {"status": "invalid event", "errors": [f"routing_key {KEY} unknown"]}))
    with pytest.raises(DeliveryError) as caught:
        await channel(pagerduty).send(FAILED)
    assert isinstance(caught.value, PermanentDeliveryError) is permanent
    assert f"answered {status}" in str(caught.value)
    assert KEY not in str(caught.value)


async def test_bad_request_is_not_retried_by_the_dispatcher(pagerduty: HttpReceiver) -> None:
    pagerduty.reply(Reply.json(400, {"status": "invalid event", "message": "Event object is invalid"}))
    d = NotificationDispatcher([channel(pagerduty)], FakeClock(), attempt_timeout_s=1, max_attempts=4, backoff_s=0.001)
    d.publish(FAILED)
    [record] = await d.drain(timeout_s=5)
    assert (record.channel, record.delivered, record.outcome, record.attempts) == ("pagerduty", False, "rejected", 1)
    assert len(pagerduty.requests) == 1


async def test_rate_limit_is_retried_until_accepted(pagerduty: HttpReceiver) -> None:
    pagerduty.reply(Reply.json(429, {"status": "throttled"}), Reply.json(500, {}))
    clock = FakeClock()
    d = NotificationDispatcher([channel(pagerduty)], clock, attempt_timeout_s=1, max_attempts=4, backoff_s=0.002)
    d.publish(FAILED)
    [record] = await d.drain(timeout_s=5)
    assert (record.delivered, record.attempts) == (True, 3)
    assert [r.json["dedup_key"] for r in pagerduty.requests] == ["sophia-r-1"] * 3
    assert clock.monotonic() == pytest.approx(0.002 + 0.004)
