"""Fire-and-forget delivery of notifications to every channel, bounded, retried, and recorded for the run report.

``publish`` never waits: a Slack outage or a hanging PagerDuty endpoint must not delay a rollback. Each delivery is a
background task that tries one channel up to ``max_attempts`` times, each attempt bounded by ``attempt_timeout_s``,
sleeping ``backoff_s * 2**(n-1)`` (through the injected clock) between attempts. A channel raises
``PermanentDeliveryError`` when retrying cannot help (a 4xx, a refused recipient); anything else is retried.
``drain`` waits for what is still in flight, cancels what is left at its deadline, and returns one record per delivery.

Channels are independent and concurrent: a channel stuck retrying an early message never holds back a later, more
important one on another channel (or on the same channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from sophia.engine.clock import Clock
from sophia.engine.model import Notification
from sophia.engine.ports import Notifier

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "failed", "rejected", "unfinished"]

MAX_ERROR_CHARS = 500
MAX_BACKOFF_S = 300.0
_CANCEL_GRACE_S = 1.0
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


class DeliveryError(RuntimeError):
    """A channel could not deliver; worth retrying. The message must already be free of secrets."""


class PermanentDeliveryError(DeliveryError):
    """A channel could not deliver and retrying cannot help (the receiver rejected the request, e.g. a 4xx)."""


@runtime_checkable
class NamedNotifier(Protocol):
    """A notifier that names its channel in delivery records (all of ``sophia.notify``'s do)."""

    name: str


@runtime_checkable
class SelectiveNotifier(Protocol):
    """A notifier that sends only some kinds (PagerDuty ignores ``started``); skipped ones leave no record."""

    def wants(self, notification: Notification) -> bool: ...


@dataclass(frozen=True)
class DeliveryRecord:
    """What happened to one notification on one channel; goes into the run report as is."""

    channel: str
    kind: str
    run_id: str
    delivered: bool
    outcome: Outcome
    attempts: int
    last_error: str | None
    started_at: datetime
    finished_at: datetime

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error"] = self.last_error  # the key the run report renders
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        return data


def channel_name(notifier: Notifier) -> str:
    if isinstance(notifier, NamedNotifier):
        return notifier.name
    return type(notifier).__name__


def scrub(text: str) -> str:
    """Reduce every URL in ``text`` to scheme and host: webhook paths, query strings and userinfo can hold secrets."""

    def host_only(match: re.Match[str]) -> str:
        try:
            parts = urlsplit(match.group(0))
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return "<url>"
        return f"{parts.scheme}://{host}{port}/…"

    cleaned = _URL.sub(host_only, text)
    return cleaned if len(cleaned) <= MAX_ERROR_CHARS else cleaned[: MAX_ERROR_CHARS - 1] + "…"


def describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"timed out after {timeout_s:g}s"
    text = str(exc) or type(exc).__name__
    return scrub(text if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {text}")


def _wants(notifier: Notifier, notification: Notification) -> bool:
    """Whether to deliver to this channel; a channel whose filter breaks gets the notification anyway."""
    if not isinstance(notifier, SelectiveNotifier):
        return True
    try:
        return notifier.wants(notification)
    except Exception as exc:
        log.warning("%s.wants failed (%s); delivering anyway", channel_name(notifier), describe(exc, 0))
        return True


class _Delivery:
    """Mutable progress of one (channel, notification) delivery while its task runs."""

    def __init__(self, seq: int, channel: str, notification: Notification, started_at: datetime) -> None:
        self.seq = seq
        self.channel = channel
        self.notification = notification
        self.started_at = started_at
        self.attempts = 0
        self.last_error: str | None = None
        self.record: DeliveryRecord | None = None

    def finish(self, outcome: Outcome, finished_at: datetime) -> DeliveryRecord:
        self.record = DeliveryRecord(
            channel=self.channel,
            kind=self.notification.kind,
            run_id=self.notification.run_id,
            delivered=outcome == "delivered",
            outcome=outcome,
            attempts=self.attempts,
            last_error=self.last_error,
            started_at=self.started_at,
            finished_at=finished_at,
        )
        return self.record


class NotificationDispatcher:
    def __init__(
        self,
        notifiers: Sequence[Notifier],
        clock: Clock,
        *,
        attempt_timeout_s: float,
        max_attempts: int,
        backoff_s: float,
    ) -> None:
        if attempt_timeout_s <= 0 or max_attempts < 1 or backoff_s < 0:
            raise ValueError("need attempt_timeout_s > 0, max_attempts >= 1 and backoff_s >= 0")
        self._notifiers = list(notifiers)
        self._clock = clock
        self._attempt_timeout_s = attempt_timeout_s
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._running: dict[asyncio.Task[None], _Delivery] = {}
        self._finished: list[_Delivery] = []
        self._seq = itertools.count()

    def publish(self, notification: Notification) -> None:
        """Start delivering ``notification`` to every channel that wants it, in the background; never blocks.

        Must be called from the event loop (it schedules tasks on the running loop).
        """
        for notifier in self._notifiers:
            if not _wants(notifier, notification):
                continue
            delivery = _Delivery(next(self._seq), channel_name(notifier), notification, self._clock.now())
            task = asyncio.get_running_loop().create_task(
                self._deliver(notifier, delivery), name=f"notify-{delivery.channel}-{notification.kind}"
            )
            self._running[task] = delivery
            task.add_done_callback(self._settled)

    async def drain(self, timeout_s: float) -> list[DeliveryRecord]:
        """Wait up to ``timeout_s`` for outstanding deliveries, cancel the rest, return the records since last drain.

        Records come in publish order; cancelled deliveries have outcome ``unfinished``.
        """
        tasks = set(self._running)
        await self._wait(tasks, timeout_s)
        pending = {task for task in tasks if not task.done()}
        for task in pending:
            task.cancel()
        await self._wait(pending, _CANCEL_GRACE_S)
        for task in tasks & self._running.keys():  # ignored cancellation: reported unfinished now, never again
            task.remove_done_callback(self._settled)
            self._finished.append(self._cut_off(self._running.pop(task)))
        finished, self._finished = self._finished, []
        return [d.record for d in sorted(finished, key=lambda d: d.seq) if d.record is not None]

    async def _wait(self, tasks: set[asyncio.Task[None]], timeout_s: float) -> None:
        """Until every task is done, or ``timeout_s`` on the clock."""
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with self._clock.timeout(timeout_s):
                    await asyncio.wait(tasks)

    @property
    def outstanding(self) -> int:
        return len(self._running)

    def _settled(self, task: asyncio.Task[None]) -> None:
        delivery = self._running.pop(task)
        self._finished.append(delivery if delivery.record else self._cut_off(delivery))  # no record: cancelled

    def _cut_off(self, delivery: _Delivery) -> _Delivery:
        delivery.last_error = delivery.last_error or "cancelled before delivery finished"
        delivery.finish("unfinished", self._clock.now())
        return delivery

    async def _deliver(self, notifier: Notifier, delivery: _Delivery) -> None:
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                await self._clock.sleep(min(MAX_BACKOFF_S, self._backoff_s * 2 ** (attempt - 2)))
            delivery.attempts = attempt
            try:
                async with self._clock.timeout(self._attempt_timeout_s):
                    await notifier.send(delivery.notification)
            except PermanentDeliveryError as exc:
                delivery.last_error = describe(exc, self._attempt_timeout_s)
                self._log(delivery, "rejected")
                delivery.finish("rejected", self._clock.now())
                return
            except Exception as exc:
                delivery.last_error = describe(exc, self._attempt_timeout_s)
                self._log(delivery, "failed")
            else:
                delivery.finish("delivered", self._clock.now())
                return
        delivery.finish("failed", self._clock.now())

    def _log(self, delivery: _Delivery, what: str) -> None:
        # No exc_info: tracebacks would carry the channel's own (unscrubbed) exception chain.
        log.warning(
            "notification %s for run %s %s on %s (attempt %d/%d): %s",
            delivery.notification.kind,
            delivery.notification.run_id,
            what,
            delivery.channel,
            delivery.attempts,
            self._max_attempts,
            delivery.last_error,
        )
