"""An in-process store with the Postgres store's semantics, for tests of the engine and runs without a database.

Records and events are kept as JSON text, exactly as the database keeps them, so what comes back is what a real
store would return. Time (the lease's "database clock") is the injected clock. Every method body runs without
awaiting, so on one event loop each call is atomic, as a transaction would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sophia.engine.clock import Clock, SystemClock
from sophia.engine.events import Event
from sophia.engine.record import Outcome, RunRecord
from sophia.engine.store import (
    ActiveLease,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    Release,
    RequestAction,
    RunExistsError,
    RunRequest,
    RunSummary,
    UnknownRunError,
    release_of,
)
from sophia.store.claim import Claim, Verdict, active_lease, expired_message, judge, lost_message, state_of
from sophia.store.codec import (
    EventRow,
    check_event,
    event_row,
    parse_event,
    parse_record,
    record_json,
    summary_of,
)


@dataclass
class _Run:
    position: int
    summary: RunSummary
    record: str
    events: list[EventRow] = field(default_factory=list)


@dataclass
class _Claim:
    run_id: str | None = None
    holder: str | None = None
    generation: int = 0
    acquired_at: datetime | None = None
    expires_at: datetime | None = None
    disconnected: bool = False


class MemoryStore:
    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._runs: dict[str, _Run] = {}
        self._claims: dict[str, _Claim] = {}
        self._requests: dict[tuple[str, RequestAction], RunRequest] = {}

    # -- runs and events -------------------------------------------------------------------------------------------

    async def create(self, record: RunRecord, event: Event | None = None) -> None:
        check_event(record.run_id, event)
        if record.run_id in self._runs:
            raise RunExistsError(record.run_id)
        run = _Run(len(self._runs), summary_of(record), record_json(record))
        if event is not None:
            run.events.append(event_row(1, event))
        self._runs[record.run_id] = run

    async def save(self, record: RunRecord, event: Event | None = None, *, fence: Lease | None = None) -> None:
        check_event(record.run_id, event)
        run = self._run(record.run_id)
        if fence is not None:
            self._check_fence(fence, record.run_id)
        text, summary = record_json(record), summary_of(record)
        if event is not None:
            run.events.append(event_row(len(run.events) + 1, event))
        run.record, run.summary = text, summary

    async def append(self, event: Event) -> None:
        run = self._run(event.run_id)
        run.events.append(event_row(len(run.events) + 1, event))

    async def load(self, run_id: str) -> RunRecord:
        return parse_record(run_id, self._run(run_id).record)

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        runs = sorted(self._runs.values(), key=lambda r: (r.summary.created_at, r.position), reverse=True)
        return [r.summary for r in runs[: max(0, limit)]]

    async def releases(self, limit: int = 50) -> list[Release]:
        made = [release_of(parse_record(r.summary.run_id, r.record)) for r in self._runs.values()
                if r.summary.outcome is Outcome.PROMOTED]  # fmt: skip
        found = sorted((r for r in made if r is not None), key=lambda r: r.promoted_at, reverse=True)
        return found[: max(0, limit)]

    async def events(self, run_id: str, after: int = 0) -> list[Event]:
        return [parse_event(run_id, row) for row in self._run(run_id).events[max(0, after) :]]

    async def request(self, run_id: str, action: RequestAction, requested_by: str, reason: str) -> RunRequest:
        self._run(run_id)
        made = RunRequest(action, requested_by, reason, self._clock.now())
        return self._requests.setdefault((run_id, action), made)

    async def pending_request(self, run_id: str, actions: frozenset[RequestAction]) -> RunRequest | None:
        found = [r for (run, action), r in self._requests.items() if run == run_id and action in actions]
        return min(found, key=lambda r: r.requested_at, default=None)

    def _run(self, run_id: str) -> _Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise UnknownRunError(run_id) from None

    # -- leases ----------------------------------------------------------------------------------------------------

    async def acquire(self, environment: str, run_id: str, holder: str, ttl_s: float) -> Lease:
        _check_ttl(ttl_s)
        row = self._claims.setdefault(environment, _Claim())
        claim, connected = self._view(environment, row)
        verdict = judge(claim, run_id, self._clock.now(), connected)
        if verdict is Verdict.HELD:
            state = state_of(claim, self._clock.now(), connected)
            assert state is not None
            raise LeaseHeldError(active_lease(claim, state, connected))
        taken = verdict is Verdict.TAKE_OVER
        now = self._clock.now()
        generation = row.generation + 1
        self._claims[environment] = _Claim(run_id, holder, generation, now, now + timedelta(seconds=ttl_s))
        return Lease(
            environment=environment,
            run_id=run_id,
            holder=holder,
            generation=generation,
            ttl_s=ttl_s,
            acquired_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
            taken_over_from=row.holder if taken else None,
            previous_run_id=row.run_id if taken else None,
        )

    async def renew(self, lease: Lease) -> None:
        row = self._current(lease)
        row.expires_at = lease.expires_at = self._clock.now() + timedelta(seconds=lease.ttl_s)

    async def release(self, lease: Lease) -> None:
        row = self._claims.get(lease.environment)
        if row is not None and row.generation == lease.generation and row.holder == lease.holder:
            row.holder, row.expires_at = None, self._clock.now()

    async def active(self, environment: str) -> ActiveLease | None:
        row = self._claims.get(environment)
        if row is None:
            return None
        claim, connected = self._view(environment, row)
        state = state_of(claim, self._clock.now(), connected)
        return active_lease(claim, state, connected) if state is not None else None

    async def close(self) -> None:
        return None

    def kill_holder(self, environment: str) -> None:
        """Test hook: the holder's process died — what Postgres sees as its session ending."""
        self._claims[environment].disconnected = True

    def _current(self, lease: Lease) -> _Claim:
        row = self._claims.get(lease.environment)
        if row is None or row.generation != lease.generation or row.holder != lease.holder:
            now = self._view(lease.environment, row)[0] if row else None
            raise LeaseLostError(lost_message(lease.environment, lease.run_id, lease.generation, now))
        return row

    def _check_fence(self, lease: Lease, run_id: str) -> None:
        if lease.run_id != run_id:
            raise ValueError(f"the lease of run {lease.run_id} cannot fence a save of run {run_id}")
        row = self._current(lease)
        if row.expires_at is None or row.expires_at <= self._clock.now():
            raise LeaseLostError(expired_message(lease.environment, lease.run_id))

    def _view(self, environment: str, row: _Claim) -> tuple[Claim, bool | None]:
        run = self._runs.get(row.run_id) if row.run_id else None
        claim = Claim(
            environment=environment,
            run_id=row.run_id,
            holder=row.holder,
            generation=row.generation,
            acquired_at=row.acquired_at,
            expires_at=row.expires_at,
            run_phase=run.summary.phase if run else None,
        )
        return claim, (False if row.disconnected else None)


def _check_ttl(ttl_s: float) -> None:
    if not ttl_s > 0:
        raise ValueError(f"a lease needs a positive ttl, not {ttl_s!r}")
