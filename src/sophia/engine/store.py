"""The run store's contract: a small async Protocol, the values it returns and the errors it raises.

The store keeps three things: the run record (write-ahead, one JSON document per run), the run's append-only event
log, and one lease per environment so that at most one run is active there. Everything here is plain data so the
engine can depend on it without knowing which database is behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sophia.engine.events import Event
from sophia.engine.model import Performance
from sophia.engine.record import Outcome, Phase, RunRecord


class StoreError(RuntimeError):
    """The store could not do what was asked; the message is safe to show (it never contains a password)."""


class StoreUnavailableError(StoreError):
    """The store's database could not be reached, or the connection broke mid-call."""


class RunExistsError(StoreError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} already exists; run ids are never reused")
        self.run_id = run_id


class UnknownRunError(StoreError, LookupError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r} in the run store")
        self.run_id = run_id


class CorruptRecordError(StoreError):
    def __init__(self, run_id: str, problem: str) -> None:
        super().__init__(f"the stored record of run {run_id} is corrupt ({problem}); nothing was changed")
        self.run_id = run_id


class LeaseLostError(StoreError):
    """Another holder took the lease over (or it was released): the caller must stop acting at once."""


class ClaimState(StrEnum):
    """Why an environment is not free."""

    RUNNING = "running"  # a holder is executing the run and renewing its lease
    ORPHANED = "orphaned"  # the holder died (lease expired or its session ended) and the run is unfinished
    PAUSED = "paused"  # the holder released cleanly but the run is unfinished (between `sophia stage` jobs)


@dataclass
class Lease:
    """A held lease. ``generation`` is the fencing token: it grows by one on every acquire of the environment."""

    environment: str
    run_id: str
    holder: str
    generation: int
    ttl_s: float
    acquired_at: datetime
    expires_at: datetime  # by the store's clock; updated by ``renew``
    taken_over_from: str | None = None  # the previous holder, when it died without releasing
    previous_run_id: str | None = None  # the run that previous holder was executing


@dataclass(frozen=True)
class ActiveLease:
    """Who has an environment, as seen now by the store's clock."""

    environment: str
    run_id: str
    holder: str | None  # None once the holder released it (the run itself is still unfinished)
    generation: int
    state: ClaimState
    acquired_at: datetime | None
    expires_at: datetime | None
    run_phase: Phase | None  # None when the run has no record in this store
    holder_connected: bool | None = None  # the holder's database session is alive (None: not known)

    def describe(self) -> str:
        """One sentence naming the run, its holder and the lease's expiry."""
        env, run = f"environment {self.environment!r}", f"run {self.run_id}"
        phase = f" (phase {self.run_phase.value})" if self.run_phase else ""
        expires = self.expires_at.isoformat(timespec="seconds") if self.expires_at else "?"
        if self.state is ClaimState.RUNNING:
            held = f"held by {self.holder}; its lease expires at {expires} unless renewed"
            return f"{env} is in use by {run}{phase}, {held}"
        if self.state is ClaimState.ORPHANED:
            why = "its database session ended" if self.holder_connected is False else f"its lease expired at {expires}"
            return f"{env} belongs to unfinished {run}{phase}: its holder {self.holder} stopped ({why})"
        return f"{env} belongs to {run}{phase}, still in progress between stages (no process is executing it now)"


class LeaseHeldError(StoreError):
    def __init__(self, active: ActiveLease) -> None:
        hint = "" if active.state is ClaimState.RUNNING else f" — resume or roll back run {active.run_id} first"
        super().__init__(active.describe() + hint)
        self.active = active

    @property
    def run_id(self) -> str:
        return self.active.run_id


class RequestAction(StrEnum):
    ABORT = "abort"
    ROLLBACK = "rollback"
    PROMOTE = "promote"  # the manual gate's approval (``sophia promote``)


STOP_ACTIONS = frozenset({RequestAction.ABORT, RequestAction.ROLLBACK})


@dataclass(frozen=True)
class RunRequest:
    """An operator's word to the process executing a run: stop it (abort, rollback) or go on (promote)."""

    action: RequestAction
    requested_by: str
    reason: str
    requested_at: datetime


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    version: str
    phase: Phase
    outcome: Outcome | None
    created_at: datetime
    finished_at: datetime | None
    actor: str


@dataclass(frozen=True)
class Release:
    """One promotion, as the release history keeps it: what went live, when, by whom, with which migrations, and
    how each service performed at its readiness-check (the next release's baseline)."""

    run_id: str
    version: str
    platform: str
    artifact: dict[str, Any] | None  # ``Artifact.to_dict()``: what ``sophia undo`` ships back
    migrations: tuple[str, ...]  # applied by this release's migrate-neon
    promoted_at: datetime
    actor: str
    performance: Mapping[str, Performance] = field(default_factory=dict)


def release_of(record: RunRecord) -> Release | None:
    """The release a promoted run made; None for any other run."""
    if record.outcome is not Outcome.PROMOTED or record.finished_at is None:
        return None
    applied = record.stage("migrate-neon").data.get("applied") or []
    measured = record.stage("readiness-check").data.get("performance") or {}
    performance = {str(name): Performance.from_dict(raw) for name, raw in measured.items()}
    return Release(record.run_id, record.version, record.platform, record.artifact,
                   tuple(str(name) for name in applied), record.finished_at, record.actor, performance)  # fmt: skip


class Store(Protocol):
    """Durable runs, their event logs, and one lease per environment.

    Write-ahead rule: the caller commits a transition with ``save`` *before* performing the action it announces.
    """

    async def create(self, record: RunRecord, event: Event | None = None) -> None:
        """Store a new run (and optionally its first event); :class:`RunExistsError` if the id is taken."""
        ...

    async def save(self, record: RunRecord, event: Event | None = None, *, fence: Lease | None = None) -> None:
        """Replace the run's record and append ``event``, in one transaction.

        With ``fence``, commit only while that lease is current and unexpired, else :class:`LeaseLostError`.
        """
        ...

    async def append(self, event: Event) -> None:
        """Append one event to its run's log."""
        ...

    async def load(self, run_id: str) -> RunRecord: ...

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """Newest first."""
        ...

    async def releases(self, limit: int = 50) -> list[Release]:
        """The release history: every promoted run, newest promotion first. It is written by the same fenced save
        that records the promotion, so the history and the runs never disagree."""
        ...

    async def events(self, run_id: str, after: int = 0) -> list[Event]:
        """The run's events in the order they were appended, without the first ``after`` (a reader's catch-up)."""
        ...

    async def request(self, run_id: str, action: RequestAction, requested_by: str, reason: str) -> RunRequest:
        """Leave the run's holder a request; the first of each action stands (a repeat returns it unchanged)."""
        ...

    async def pending_request(self, run_id: str, actions: frozenset[RequestAction]) -> RunRequest | None:
        """The earliest request for the run among ``actions``, if any."""
        ...

    async def acquire(self, environment: str, run_id: str, holder: str, ttl_s: float) -> Lease:
        """Take the environment for ``run_id``, or raise :class:`LeaseHeldError` naming whoever has it."""
        ...

    async def renew(self, lease: Lease) -> None:
        """Push the lease's expiry ``ttl_s`` ahead; :class:`LeaseLostError` when it is no longer ours."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the lease up (a no-op when it was already lost)."""
        ...

    async def active(self, environment: str) -> ActiveLease | None:
        """Who has ``environment``, or None when it is free."""
        ...

    async def close(self) -> None: ...
