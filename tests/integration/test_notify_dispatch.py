"""The dispatcher driving the real channels against real receivers: slow, failing and rejecting endpoints never delay
the caller, retries happen within bounds, and no secret reaches a delivery record or a log line."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from sophia.config import NotifyConfig
from sophia.engine.clock import SystemClock
from sophia.engine.dispatch import DeliveryRecord, NotificationDispatcher
from sophia.engine.model import Notification
from sophia.notify import create_notifiers
from sophia.notify.pagerduty import PagerDutyNotifier
from sophia.notify.slack import SlackNotifier
from tests.fakes.receivers import HttpReceiver, Reply, SmtpReceiver, wait_until

SLACK_TOKEN = "xSLACKwebhookTOKENx"
SLACK_PATH = f"/services/T0001/B0001/{SLACK_TOKEN}"
PD_KEY = "pdROUTINGkeySECRET0000000000000c"
SMTP_PASSWORD = "smtpPASSWORDsecret!"
SECRETS = (SLACK_TOKEN, PD_KEY, SMTP_PASSWORD)

NOTE = Notification(
    kind="rolled_back",
    run_id="r-5",
    version="v1.2.0",
    platform="local",
    summary="comms-mcp canary failed",
    occurred_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    stage="canary-deploy",
    service="comms-mcp",
)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver(default=Reply(200, "ok")) as server:
        yield server


class RecordingClock(SystemClock):
    """Real time (the receivers are real servers), with every sleep the dispatcher asks for written down."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await super().sleep(seconds)


def dispatcher(
    *notifiers: object, timeout_s: float = 0.05, attempts: int = 3
) -> tuple[NotificationDispatcher, RecordingClock]:
    clock = RecordingClock()
    d = NotificationDispatcher(
        list(notifiers),  # type: ignore[arg-type]
        clock,
        attempt_timeout_s=timeout_s,
        max_attempts=attempts,
        backoff_s=0.005,
    )
    return d, clock


async def test_a_hanging_receiver_never_delays_publish_and_drain_records_the_timeouts(receiver: HttpReceiver) -> None:
    receiver.default = Reply(hang=True)
    d, clock = dispatcher(SlackNotifier(receiver.url(SLACK_PATH)), timeout_s=0.2, attempts=3)

    started = time.perf_counter()
    d.publish(NOTE)
    assert time.perf_counter() - started < 0.1  # well under one attempt timeout
    assert d.outstanding == 1
    assert receiver.requests == []  # nothing was sent while the caller waited

    [record] = await d.drain(timeout_s=5)
    assert (record.channel, record.delivered, record.outcome, record.attempts) == ("slack", False, "failed", 3)
    assert record.last_error == "timed out after 0.2s"
    assert clock.slept == pytest.approx([0.005, 0.010])  # backoff went through the injected clock
    wait_until(lambda: len(receiver.requests) == 3)


async def test_server_error_then_success_is_delivered_on_attempt_two(receiver: HttpReceiver) -> None:
    receiver.reply(Reply(500, "internal_error"))
    d, _ = dispatcher(SlackNotifier(receiver.url(SLACK_PATH)), timeout_s=2)
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=5)
    assert (record.delivered, record.outcome, record.attempts) == (True, "delivered", 2)
    assert record.last_error is not None
    assert "answered 500" in record.last_error
    first, second = receiver.requests
    assert first.json == second.json


async def test_a_dropped_connection_is_retried(receiver: HttpReceiver) -> None:
    receiver.reply(Reply(drop=True))
    d, _ = dispatcher(SlackNotifier(receiver.url(SLACK_PATH)), timeout_s=2)
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=5)
    assert (record.delivered, record.attempts) == (True, 2)
    assert record.last_error is not None
    assert "RemoteProtocolError" in record.last_error


async def test_a_bad_request_is_not_retried(receiver: HttpReceiver) -> None:
    receiver.default = Reply(400, "invalid_payload")
    d, clock = dispatcher(SlackNotifier(receiver.url(SLACK_PATH)), timeout_s=2, attempts=5)
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=5)
    assert (record.delivered, record.outcome, record.attempts) == (False, "rejected", 1)
    assert len(receiver.requests) == 1
    assert clock.slept == []


async def test_one_slow_channel_does_not_hold_back_another(receiver: HttpReceiver) -> None:
    with HttpReceiver(default=Reply(hang=True)) as stuck:
        slack = SlackNotifier(receiver.url(SLACK_PATH))
        pagerduty = PagerDutyNotifier(PD_KEY, url=stuck.url("/v2/enqueue"))
        d, _ = dispatcher(pagerduty, slack, timeout_s=30)
        d.publish(NOTE)
        records = await d.drain(timeout_s=0.3)
    by_channel = {r.channel: r for r in records}
    assert by_channel["slack"].delivered
    assert (by_channel["pagerduty"].outcome, by_channel["pagerduty"].attempts) == ("unfinished", 1)
    assert len(receiver.requests) == 1


async def test_no_secret_reaches_a_record_or_a_log_line(
    receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Each receiver echoes the secret it was sent, as careless error pages do.
    pd_reply = Reply.json(400, {"status": "invalid event", "errors": [f"routing_key {PD_KEY} is not valid"]})
    with HttpReceiver(default=pd_reply) as pd, SmtpReceiver(credentials=("sophia", "the-right-one")) as smtp:
        receiver.default = Reply(404, f"no_service: {SLACK_PATH}")
        dead = HttpReceiver()
        dead.stop()  # a closed port: connection refused
        configs = [
            NotifyConfig(
                slack_webhook_url=SecretStr(receiver.url(SLACK_PATH)),
                pagerduty_integration_key=SecretStr(PD_KEY),
                pagerduty_url=pd.url("/v2/enqueue"),
                smtp_host="127.0.0.1",
                smtp_port=smtp.port,
                smtp_username="sophia",
                smtp_password=SecretStr(SMTP_PASSWORD),
                smtp_starttls=False,
                email_to=["ops@example.com"],
            ),
            NotifyConfig(slack_webhook_url=SecretStr(dead.url(SLACK_PATH))),
        ]
        records: list[DeliveryRecord] = []
        for config in configs:
            d, _ = dispatcher(*create_notifiers(config), timeout_s=2, attempts=2)
            d.publish(NOTE)
            d.publish(replace(NOTE, kind="rollback_failed", run_id="r-6"))
            records += await d.drain(timeout_s=10)

    assert {r.channel for r in records} == {"slack", "pagerduty", "email"}
    assert len(records) == 8
    assert not any(r.delivered for r in records)
    assert all(r.last_error for r in records)
    dumped = json.dumps([r.to_dict() for r in records]) + repr([asdict(r) for r in records]) + caplog.text
    for secret in SECRETS:
        assert secret not in dumped
    assert "answered 404" in dumped
    assert "answered 400" in dumped
    assert "rejected the login 535" in dumped
    assert "ConnectError" in dumped
    assert "HTTP Request: POST http://127.0.0.1" in caplog.text  # httpx's own request log was there, masked
