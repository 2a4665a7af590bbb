"""The dispatcher's policy (background delivery, bounded attempts, backoff, permanent errors, drain) against
in-process fake channels that record what they were given; all on virtual time (the fake clock, or the loop's)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sophia.engine import dispatch
from sophia.engine.clock import Clock, FakeClock, SystemClock
from sophia.engine.dispatch import (
    DeliveryError,
    NotificationDispatcher,
    PermanentDeliveryError,
    channel_name,
    describe,
    scrub,
)
from sophia.engine.model import Notification

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps

NOTE = Notification(
    kind="rolled_back",
    run_id="run-1",
    version="v1.2.0",
    platform="local",
    summary="canary failed",
    occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
)


class ScriptedChannel:
    """A channel that fails with the scripted errors first, then succeeds; ``hang`` makes every send block."""

    def __init__(self, name: str, *errors: Exception, hang: bool = False, kinds: tuple[str, ...] = ()) -> None:
        self.name = name
        self.errors = list(errors)
        self.hang = hang
        self.kinds = kinds
        self.calls: list[Notification] = []
        self.delivered: list[Notification] = []

    def wants(self, notification: Notification) -> bool:
        return not self.kinds or notification.kind in self.kinds

    async def send(self, notification: Notification) -> None:
        self.calls.append(notification)
        if self.hang:
            await asyncio.Event().wait()
        if self.errors:
            raise self.errors.pop(0)
        self.delivered.append(notification)


class Anonymous:
    async def send(self, notification: Notification) -> None:
        return None


def dispatcher(*channels: object, clock: Clock | None = None, **policy: float) -> NotificationDispatcher:
    settings = {"attempt_timeout_s": 0.05, "max_attempts": 3, "backoff_s": 0.01} | policy
    return NotificationDispatcher(
        list(channels),  # type: ignore[arg-type]
        clock or SystemClock(),  # on the loop's time, fast-forwarded (looptime)
        attempt_timeout_s=settings["attempt_timeout_s"],
        max_attempts=int(settings["max_attempts"]),
        backoff_s=settings["backoff_s"],
    )


async def test_publish_returns_before_delivery_and_drain_reports_it() -> None:
    channel = ScriptedChannel("fake")
    d = dispatcher(channel)
    d.publish(NOTE)
    assert channel.calls == []  # nothing ran yet: publish only scheduled the delivery
    assert d.outstanding == 1
    [record] = await d.drain(timeout_s=1)
    assert channel.delivered == [NOTE]
    assert (record.channel, record.kind, record.run_id) == ("fake", "rolled_back", "run-1")
    assert (record.delivered, record.outcome, record.attempts, record.last_error) == (True, "delivered", 1, None)


async def test_transient_errors_are_retried_with_exponential_backoff_on_the_clock() -> None:
    clock = FakeClock()
    channel = ScriptedChannel("fake", DeliveryError("fake: 500"), DeliveryError("fake: 503"))
    d = dispatcher(channel, clock=clock, max_attempts=4, backoff_s=0.5)
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=5)  # the drain's deadline is on the same clock as the backoff
    assert record.delivered
    assert record.attempts == 3
    assert record.last_error == "fake: 503"
    assert clock.monotonic() == pytest.approx(0.5 + 1.0)  # slept 0.5 then 1.0, virtually
    assert record.finished_at > record.started_at


async def test_gives_up_after_max_attempts() -> None:
    channel = ScriptedChannel("fake", *[RuntimeError("boom")] * 5)
    d = dispatcher(channel, max_attempts=3)
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=1)
    assert (record.delivered, record.outcome, record.attempts) == (False, "failed", 3)
    assert record.last_error == "RuntimeError: boom"
    assert len(channel.calls) == 3


async def test_permanent_errors_are_not_retried() -> None:
    clock = FakeClock()
    channel = ScriptedChannel("fake", PermanentDeliveryError("fake: 400 invalid payload"))
    d = dispatcher(channel, clock=clock)
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=1)
    assert (record.delivered, record.outcome, record.attempts) == (False, "rejected", 1)
    assert record.last_error == "fake: 400 invalid payload"
    assert len(channel.calls) == 1
    assert clock.monotonic() == 0


async def test_each_attempt_is_bounded_by_the_attempt_timeout() -> None:
    channel = ScriptedChannel("slow", hang=True)
    d = dispatcher(channel, attempt_timeout_s=0.02, max_attempts=2)
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=5)
    assert (record.delivered, record.outcome, record.attempts) == (False, "failed", 2)
    assert record.last_error == "timed out after 0.02s"


async def test_drain_deadline_cancels_and_records_unfinished_deliveries() -> None:
    slow, fast = ScriptedChannel("slow", hang=True), ScriptedChannel("fast")
    d = dispatcher(slow, fast, attempt_timeout_s=30)
    d.publish(NOTE)
    records = await d.drain(timeout_s=0.05)
    by_channel = {r.channel: r for r in records}
    assert by_channel["fast"].delivered
    unfinished = by_channel["slow"]
    assert (unfinished.delivered, unfinished.outcome, unfinished.attempts) == (False, "unfinished", 1)
    assert unfinished.last_error == "cancelled before delivery finished"
    assert d.outstanding == 0


async def test_channels_are_independent_and_records_keep_publish_order() -> None:
    slow = ScriptedChannel("slow", DeliveryError("down"))
    fast = ScriptedChannel("fast")
    d = dispatcher(slow, fast)
    second = replace(NOTE, kind="promoted", run_id="run-2")
    d.publish(NOTE)
    d.publish(second)
    records = await d.drain(timeout_s=1)
    assert [(r.channel, r.run_id) for r in records] == [
        ("slow", "run-1"),
        ("fast", "run-1"),
        ("slow", "run-2"),
        ("fast", "run-2"),
    ]
    assert fast.delivered == [NOTE, second]
    assert await d.drain(timeout_s=1) == []  # drained records are handed out once


async def test_channels_that_do_not_want_a_kind_are_skipped_without_a_record() -> None:
    pager = ScriptedChannel("pager", kinds=("rolled_back",))
    d = dispatcher(pager)
    d.publish(replace(NOTE, kind="started"))
    assert await d.drain(timeout_s=1) == []
    assert pager.calls == []


async def test_unnamed_notifiers_are_named_by_class() -> None:
    assert channel_name(Anonymous()) == "Anonymous"
    d = dispatcher(Anonymous())
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=1)
    assert record.channel == "Anonymous"
    assert record.delivered


async def test_errors_are_scrubbed_of_url_paths_even_when_a_channel_forgets() -> None:
    leaky = ScriptedChannel(
        "leaky", PermanentDeliveryError("POST https://user:pw@hooks.example:8443/services/T1/SECRET?k=v")
    )
    d = dispatcher(leaky)
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=1)
    assert record.last_error == "POST https://hooks.example:8443/…"


def test_scrub_and_describe() -> None:
    assert scrub("see http://127.0.0.1:9/a/b?token=x and ftp://h/x") == "see http://127.0.0.1:9/… and ftp://h/…"
    assert len(scrub("x" * 2000)) == 500
    assert describe(TimeoutError(), 1.5) == "timed out after 1.5s"
    assert describe(ValueError("bad"), 1) == "ValueError: bad"
    assert describe(DeliveryError("slack: 500"), 1) == "slack: 500"


async def test_record_serialises_for_the_report() -> None:
    d = dispatcher(ScriptedChannel("fake"), clock=FakeClock())
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=1)
    data = record.to_dict()
    assert data["started_at"] == "2026-01-01T00:00:00+00:00"
    assert data["error"] is None
    assert data["channel"] == "fake"
    assert data["delivered"] is True


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        dispatcher(max_attempts=0)


class BrokenFilter(ScriptedChannel):
    def wants(self, notification: Notification) -> bool:
        raise RuntimeError("filter bug")


async def test_a_broken_filter_still_gets_the_notification() -> None:
    channel = BrokenFilter("broken")
    d = dispatcher(channel)
    d.publish(NOTE)  # must not raise into the caller
    [record] = await d.drain(timeout_s=1)
    assert record.delivered
    assert channel.delivered == [NOTE]


class Stubborn:
    name = "stubborn"

    async def send(self, notification: Notification) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(30)  # swallows the first cancellation


async def test_a_channel_ignoring_cancellation_is_reported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "_CANCEL_GRACE_S", 0.01)
    d = dispatcher(Stubborn(), attempt_timeout_s=60)
    d.publish(NOTE)
    [record] = await d.drain(timeout_s=0.01)
    assert (record.channel, record.outcome, record.attempts) == ("stubborn", "unfinished", 1)
    assert d.outstanding == 0
    assert await d.drain(timeout_s=0.01) == []


async def test_publishing_during_a_drain_is_kept_for_the_next_drain() -> None:
    late = ScriptedChannel("late")
    d = dispatcher(ScriptedChannel("slow", hang=True), late, attempt_timeout_s=0.05, max_attempts=1)
    d.publish(NOTE)
    draining = asyncio.ensure_future(d.drain(timeout_s=5))
    await asyncio.sleep(0)
    d.publish(replace(NOTE, run_id="run-2"))
    first = await draining
    assert {(r.channel, r.run_id) for r in first} >= {("slow", "run-1"), ("late", "run-1")}
    rest = await d.drain(timeout_s=5)
    assert {(r.channel, r.run_id) for r in first + rest} == {
        ("slow", "run-1"),
        ("late", "run-1"),
        ("slow", "run-2"),
        ("late", "run-2"),
    }
