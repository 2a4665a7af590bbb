"""Who may take an environment: one pure decision, shared by every store so they cannot disagree.

An environment's claim row names a run, the process (holder) executing it, and the lease's expiry. The claim is free
when no run holds it, or when nobody is executing the run any more *and* the run is finished. A holder that died
(lease expired, or its database session ended) leaves an unfinished run *orphaned*: only that same run — a resume —
may take it over; another run is refused until the orphan is resumed or rolled back. A holder that released cleanly
before its run finished (stage-by-stage jobs) leaves it *paused*: the next stage job of that run takes it without a
takeover, anybody else is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sophia.engine.record import Phase
from sophia.engine.store import ActiveLease, ClaimState


@dataclass(frozen=True)
class Claim:
    """The environment's lease row, joined with the phase of the run it names."""

    environment: str
    run_id: str | None
    holder: str | None
    generation: int
    acquired_at: datetime | None
    expires_at: datetime | None
    run_phase: Phase | None  # None when the run has no record in the store


class Verdict(StrEnum):
    FREE = "free"
    TAKE_OVER = "take_over"  # free, but the previous holder died without releasing: report it
    HELD = "held"


def state_of(claim: Claim | None, now: datetime, holder_connected: bool | None) -> ClaimState | None:
    """Why the environment is not free — or None when it is."""
    if claim is None or claim.run_id is None:
        return None
    expired = claim.expires_at is None or claim.expires_at <= now
    if claim.holder is not None and not expired and holder_connected is not False:
        return ClaimState.RUNNING
    if claim.run_phase is None or claim.run_phase.terminal:
        return None
    return ClaimState.PAUSED if claim.holder is None else ClaimState.ORPHANED


def judge(claim: Claim | None, run_id: str, now: datetime, holder_connected: bool | None) -> Verdict:
    """May ``run_id`` take the environment now? ``holder_connected`` is None when liveness is not known."""
    state = state_of(claim, now, holder_connected)
    if state is ClaimState.RUNNING:
        return Verdict.HELD
    if state is not None and (claim is None or claim.run_id != run_id):
        return Verdict.HELD
    if claim is not None and claim.run_id is not None and claim.holder is not None:
        return Verdict.TAKE_OVER
    return Verdict.FREE


def active_lease(claim: Claim, state: ClaimState, holder_connected: bool | None) -> ActiveLease:
    assert claim.run_id is not None
    return ActiveLease(
        environment=claim.environment,
        run_id=claim.run_id,
        holder=claim.holder,
        generation=claim.generation,
        state=state,
        acquired_at=claim.acquired_at,
        expires_at=claim.expires_at,
        run_phase=claim.run_phase,
        holder_connected=holder_connected,
    )


def lost_message(environment: str, run_id: str, generation: int, now: Claim | None) -> str:
    """Why a lease of ``generation`` is no longer its holder's, given the claim as it is now."""
    mine = f"the lease on environment {environment!r} of run {run_id} (generation {generation})"
    if now is None or now.generation == generation:
        return f"{mine} was released"
    if now.holder is None:
        return f"{mine} was taken over at generation {now.generation} by run {now.run_id}, since released"
    return f"{mine} was taken over by {now.holder} for run {now.run_id} (generation {now.generation})"


def expired_message(environment: str, run_id: str) -> str:
    return (
        f"the lease on environment {environment!r} of run {run_id} expired without renewal; refusing to commit "
        "a transition that another process may be taking over"
    )
