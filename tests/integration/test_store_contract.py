"""The store contract, run against both stores: MemoryStore (virtual time) and PostgresStore (a real server).

Only time differs: the memory store's clock is advanced, while Postgres leases expire by the database clock, so
those tests use sub-second ttls and really wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from sophia.engine.clock import FakeClock
from sophia.engine.events import EventKind
from sophia.engine.record import Outcome, Phase, RunRecord
from sophia.engine.store import RequestAction
from sophia.store import (
    ClaimState,
    LeaseHeldError,
    LeaseLostError,
    MemoryStore,
    RunExistsError,
    Store,
    UnknownRunError,
    create_store,
)
from sophia.store.postgres import PostgresStore
from tests.unit.test_store_records import T0, event, full_record, planned

TTL = 0.4  # long enough for a few round trips, short enough to wait out


@dataclass
class Harness:
    store: Store
    pass_time: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "postgres"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        yield Harness(create_store(None, clock=clock), advance)
        return
    store = create_store(request.getfixturevalue("database_url"))
    assert isinstance(store, PostgresStore)
    try:
        yield Harness(store, asyncio.sleep)
    finally:
        await store.close()


# -- runs and events -------------------------------------------------------------------------------------------------


async def test_a_full_record_round_trips(harness: Harness) -> None:
    store = harness.store
    await store.create(planned("r1"))
    record = full_record("r1")
    await store.save(record)
    assert await store.load("r1") == record


async def test_run_ids_are_never_reused(harness: Harness) -> None:
    await harness.store.create(planned("r1"))
    with pytest.raises(RunExistsError, match="run r1 already exists"):
        await harness.store.create(planned("r1", version="9.9.9"))
    assert (await harness.store.load("r1")).version == "2.4.0"


async def test_unknown_runs_are_named(harness: Harness) -> None:
    store = harness.store
    for call in (
        store.load("nope"),
        store.events("nope"),
        store.save(planned("nope")),
        store.append(event("nope")),
        store.save(planned("nope"), event("nope")),
    ):
        with pytest.raises(UnknownRunError, match="'nope'"):
            await call


async def test_events_come_back_in_order_with_their_fields(harness: Harness) -> None:
    store = harness.store
    record = planned("r1")
    await store.create(record, event("r1", "planned", n=0))
    assert await store.events("r1") == [event("r1", "planned", n=0)]
    record.phase = Phase.RUNNING
    await store.save(record, event("r1", "started", n=1, kind=EventKind.RUN_STARTED))
    await store.append(event("r1", "observed", n=2, kind=EventKind.OBSERVATION))
    await store.save(record)  # no event
    await store.append(event("r1", "weights", n=3, kind=EventKind.WEIGHTS_CHANGED))
    got = await store.events("r1")
    assert [e.message for e in got] == ["planned", "started", "observed", "weights"]
    assert got[3] == event("r1", "weights", n=3, kind=EventKind.WEIGHTS_CHANGED)
    assert await store.events("r1", after=2) == got[2:]  # a reader catching up skips what it has
    assert await store.events("r1", after=4) == []
    await store.create(planned("r2"))
    assert await store.events("r2") == []
    assert await store.events("r2", after=3) == []
    with pytest.raises(UnknownRunError):
        await store.events("nope", after=1)


async def test_an_event_must_belong_to_the_record_it_is_saved_with(harness: Harness) -> None:
    await harness.store.create(planned("r1"))
    with pytest.raises(ValueError, match="event of run r2"):
        await harness.store.save(planned("r1"), event("r2"))


async def test_runs_are_listed_newest_first(harness: Harness) -> None:
    store = harness.store
    await store.create(planned("old", created_at=T0))
    await store.create(planned("newest", created_at=T0 + timedelta(hours=2)))
    await store.create(planned("middle", created_at=T0 + timedelta(hours=1)))
    await store.create(planned("middle-later", created_at=T0 + timedelta(hours=1)))  # same time: insertion breaks it
    finished = full_record("old")
    await store.save(finished)
    runs = await store.list_runs()
    assert [r.run_id for r in runs] == ["newest", "middle-later", "middle", "old"]
    assert runs[-1].phase is Phase.ROLLED_BACK
    assert runs[-1].outcome is Outcome.ROLLED_BACK
    assert runs[-1].finished_at == finished.finished_at
    assert runs[-1].actor == "ci:octocat"
    assert runs[0].created_at == T0 + timedelta(hours=2)
    assert [r.run_id for r in await store.list_runs(limit=2)] == ["newest", "middle-later"]


# -- leases ----------------------------------------------------------------------------------------------------------


async def test_one_run_per_environment(harness: Harness) -> None:
    store = harness.store
    await store.create(planned("r1"))
    lease = await store.acquire("production", "r1", "alice@host:101", ttl_s=30)
    assert (lease.generation, lease.taken_over_from) == (1, None)
    with pytest.raises(LeaseHeldError) as held:
        await store.acquire("production", "r2", "bob@host:202", ttl_s=30)
    message = str(held.value)
    assert "run r1" in message
    assert "alice@host:101" in message
    assert lease.expires_at.isoformat(timespec="seconds") in message
    assert held.value.run_id == "r1"
    with pytest.raises(LeaseHeldError):  # the same run cannot be executed twice at once either
        await store.acquire("production", "r1", "bob@host:202", ttl_s=30)
    other = await store.acquire("staging", "r2", "bob@host:202", ttl_s=30)  # environments are independent
    assert other.generation == 1
    active = await store.active("production")
    assert active is not None
    assert (active.run_id, active.holder, active.state) == ("r1", "alice@host:101", ClaimState.RUNNING)


async def test_renew_pushes_the_expiry_ahead(harness: Harness) -> None:
    store = harness.store
    lease = await store.acquire("production", "r1", "a", ttl_s=30)
    first = lease.expires_at
    await harness.pass_time(0.05)
    await store.renew(lease)
    assert lease.expires_at > first
    active = await store.active("production")
    assert active is not None
    assert active.expires_at == lease.expires_at


async def test_release_frees_a_finished_run_and_pauses_an_unfinished_one(harness: Harness) -> None:
    store = harness.store
    record = planned("r1")
    await store.create(record)
    lease = await store.acquire("production", "r1", "job-1", ttl_s=30)
    await store.release(lease)
    paused = await store.active("production")
    assert paused is not None
    assert (paused.state, paused.holder) == (ClaimState.PAUSED, None)
    with pytest.raises(LeaseHeldError, match="still in progress between stages"):
        await store.acquire("production", "r2", "other", ttl_s=30)
    nxt = await store.acquire("production", "r1", "job-2", ttl_s=30)  # the next stage job of the same run
    assert (nxt.generation, nxt.taken_over_from) == (2, None)
    record.phase, record.outcome = Phase.PROMOTED, Outcome.PROMOTED
    await store.save(record)
    await store.release(nxt)
    assert await store.active("production") is None
    third = await store.acquire("production", "r2", "other", ttl_s=30)
    assert (third.generation, third.taken_over_from) == (3, None)


async def test_an_expired_lease_is_taken_over_and_the_takeover_reported(harness: Harness) -> None:
    store = harness.store
    old = await store.acquire("production", "r1", "dead-holder", ttl_s=TTL)  # r1 has no record: nothing to recover
    with pytest.raises(LeaseHeldError):
        await store.acquire("production", "r2", "new-holder", ttl_s=30)
    await harness.pass_time(TTL + 0.2)
    assert await store.active("production") is None
    new = await store.acquire("production", "r2", "new-holder", ttl_s=30)
    assert (new.taken_over_from, new.previous_run_id, new.generation) == ("dead-holder", "r1", old.generation + 1)
    with pytest.raises(LeaseLostError, match="taken over by new-holder for run r2"):
        await store.renew(old)
    await store.release(old)  # a no-op: it must not free the new holder's lease
    active = await store.active("production")
    assert active is not None
    assert active.holder == "new-holder"


async def test_an_orphaned_run_is_only_taken_over_by_its_resume(harness: Harness) -> None:
    store = harness.store
    record = planned("r1")
    record.phase = Phase.RUNNING
    await store.create(record)
    await store.acquire("production", "r1", "crashed", ttl_s=TTL)
    await harness.pass_time(TTL + 0.2)
    active = await store.active("production")
    assert active is not None
    assert active.state is ClaimState.ORPHANED
    with pytest.raises(LeaseHeldError, match=r"unfinished run r1 \(phase running\).*crashed.*resume or roll back"):
        await store.acquire("production", "r2", "next-deploy", ttl_s=30)
    resumed = await store.acquire("production", "r1", "resumer", ttl_s=30)
    assert (resumed.taken_over_from, resumed.previous_run_id) == ("crashed", "r1")


async def test_a_fenced_save_commits_only_while_the_lease_is_current(harness: Harness) -> None:
    store = harness.store
    record = planned("r1")
    await store.create(record)
    old = await store.acquire("production", "r1", "paused-holder", ttl_s=TTL)
    record.phase = Phase.RUNNING
    await store.save(record, event("r1", "canary at 10 %"), fence=old)
    await harness.pass_time(TTL + 0.2)
    with pytest.raises(LeaseLostError, match="expired without renewal"):
        await store.save(record, event("r1", "canary at 50 %"), fence=old)
    new = await store.acquire("production", "r1", "resumer", ttl_s=30)
    assert new.taken_over_from == "paused-holder"
    record.phase = Phase.ROLLING_BACK
    await store.save(record, event("r1", "resume: rolling back"), fence=new)
    stale = planned("r1")
    stale.phase = Phase.PROMOTED
    with pytest.raises(LeaseLostError, match="taken over by resumer"):
        await store.save(stale, event("r1", "promote"), fence=old)
    assert (await store.load("r1")).phase is Phase.ROLLING_BACK
    assert [e.message for e in await store.events("r1")] == ["canary at 10 %", "resume: rolling back"]


async def test_a_lease_that_expired_but_was_not_taken_can_be_renewed(harness: Harness) -> None:
    store = harness.store
    record = planned("r1")
    await store.create(record)
    lease = await store.acquire("production", "r1", "slow", ttl_s=TTL)
    await harness.pass_time(TTL + 0.2)
    await store.renew(lease)
    await store.save(record, fence=lease)
    assert lease.generation == 1


async def test_a_lease_of_another_run_cannot_fence_a_save(harness: Harness) -> None:
    store = harness.store
    await store.create(planned("r1"))
    lease = await store.acquire("production", "r2", "a", ttl_s=30)
    with pytest.raises(ValueError, match="cannot fence"):
        await store.save(planned("r1"), fence=lease)


async def test_a_lease_needs_a_positive_ttl(harness: Harness) -> None:
    with pytest.raises(ValueError, match="positive ttl"):
        await harness.store.acquire("production", "r1", "a", ttl_s=0)


def test_the_factory_picks_memory_without_a_dsn() -> None:
    assert isinstance(create_store(None), MemoryStore)


async def test_the_first_stop_request_stands_and_the_holder_can_read_it(harness: Harness) -> None:
    store = harness.store
    await store.create(planned("r-req"))
    stops = frozenset({RequestAction.ABORT, RequestAction.ROLLBACK})
    assert await store.pending_request("r-req", stops) is None
    first = await store.request("r-req", RequestAction.ABORT, "alice", "bad numbers on the dashboard")
    again = await store.request("r-req", RequestAction.ABORT, "bob", "me too")
    assert again == first
    await harness.pass_time(0.01)
    await store.request("r-req", RequestAction.ROLLBACK, "carol", "later")
    assert await store.pending_request("r-req", frozenset({RequestAction.PROMOTE})) is None
    approved = await store.request("r-req", RequestAction.PROMOTE, "dave", "looks good")
    assert await store.pending_request("r-req", frozenset({RequestAction.PROMOTE})) == approved
    pending = await store.pending_request("r-req", stops)
    assert pending is not None
    assert (pending.action, pending.requested_by, pending.reason) == (
        RequestAction.ABORT,
        "alice",
        "bad numbers on the dashboard",
    )
    with pytest.raises(UnknownRunError):
        await store.request("r-missing", RequestAction.ABORT, "alice", "x")


# -- the release history ---------------------------------------------------------------------------------------------


def promoted(run_id: str, version: str, minutes: int, applied: list[str]) -> RunRecord:
    record = planned(run_id, version=version, created_at=T0 + timedelta(minutes=minutes))
    record.phase, record.outcome = Phase.PROMOTED, Outcome.PROMOTED
    record.finished_at = record.created_at + timedelta(seconds=90)
    record.artifact = {"kind": "wheel", "reference": f"/artifacts/sophia-{version}.whl", "version": version}
    record.stage("migrate-neon").data = {"applied": applied}
    return record


async def test_the_release_history_is_every_promotion_newest_first(harness: Harness) -> None:
    store = harness.store
    runs = [promoted("r1", "v1.0.0", 0, ["001_audit"]), promoted("r2", "v1.1.0", 10, ["002_analytics_login"])]
    failed = planned("r3", version="v1.2.0", created_at=T0 + timedelta(minutes=20))
    failed.phase, failed.outcome, failed.finished_at = Phase.ROLLED_BACK, Outcome.ROLLED_BACK, T0
    latest = promoted("r4", "v1.1.1", 30, [])
    for record in (*runs, failed, latest):
        await store.create(planned(record.run_id, version=record.version, created_at=record.created_at))
        await store.save(record)
    history = await store.releases()
    assert [(r.run_id, r.version, r.migrations) for r in history] == [
        ("r4", "v1.1.1", ()), ("r2", "v1.1.0", ("002_analytics_login",)), ("r1", "v1.0.0", ("001_audit",)),
    ]  # fmt: skip
    first = history[-1]
    assert first.promoted_at == T0 + timedelta(seconds=90)
    assert first.actor == "ci:octocat"
    assert first.platform == "local"
    assert first.artifact == {"kind": "wheel", "reference": "/artifacts/sophia-v1.0.0.whl", "version": "v1.0.0"}
    assert [r.run_id for r in await store.releases(limit=1)] == ["r4"]
