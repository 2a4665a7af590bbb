"""Durable runs in one process: write-ahead commits, the audit trail, the lease, stop requests, and resuming."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from sophia.engine import recovery, run
from sophia.engine.model import CanarySpec
from sophia.engine.record import Outcome, Phase, RunRecord, StageStatus
from sophia.engine.session import RunFencedError, SessionPolicy, drive
from sophia.engine.store import LeaseHeldError, RequestAction
from sophia.platforms.memory import MemoryPlatform
from sophia.store import MemoryStore
from tests.fakes.engine_world import World, versions, world

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps


class WitnessPlatform(MemoryPlatform):
    """Reads the run store at the moment each action starts: the record must already announce it."""

    def __init__(self, services: Mapping[str, str], store: MemoryStore, run_id: str) -> None:
        super().__init__(services)
        self.store, self.run_id = store, run_id
        self.seen: list[str] = []

    async def set_weights(self, weights: Mapping[str, int]) -> None:
        stored = await self.store.load(self.run_id)
        assert stored.weights == dict(weights), "weights applied before they were recorded"
        self.seen.append(f"set_weights {set(weights.values())}")
        await super().set_weights(weights)

    async def promote(self) -> None:
        stored = await self.store.load(self.run_id)
        assert set(stored.weights.values()) == {100}, "promotion applied before it was recorded"
        self.seen.append("promote")
        await super().promote()

    async def rollback(self) -> None:
        stored = await self.store.load(self.run_id)
        assert stored.phase is Phase.ROLLING_BACK, "rollback applied before it was recorded"
        self.seen.append("rollback")
        await super().rollback()


LONG_STEP = {"step_duration_s": 30, "interval_s": 0.01, "min_requests": 5, "warmup_s": 0.02}


def policy(holder: str = "test-holder", ttl_s: float = 5.0, heartbeat_s: float = 0.05) -> SessionPolicy:
    return SessionPolicy("test-env", holder, ttl_s, heartbeat_s, request_poll_s=0.01)


async def witnessed(repo_root: Path, tmp_path: Path, faults: tuple[str, ...] = ()) -> tuple[World, WitnessPlatform]:
    store = MemoryStore()
    names = (await world(repo_root, tmp_path)).ctx.services
    platform = WitnessPlatform(dict.fromkeys(names, "v1.0.0"), store, "r-test")
    return await world(repo_root, tmp_path, platform=platform, store=store, faults=faults), platform


async def test_every_action_is_recorded_before_it_happens(repo_root: Path, tmp_path: Path) -> None:
    w, platform = await witnessed(repo_root, tmp_path)
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    assert platform.seen == ["set_weights {10}", "promote"]
    stored = await w.store.load("r-test")
    assert stored.as_dict() == w.record.as_dict()
    kinds = [e.kind.value for e in await w.store.events("r-test")]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_finished"
    assert kinds.count("stage_started") == 7


async def test_a_rollback_is_recorded_before_traffic_moves(repo_root: Path, tmp_path: Path) -> None:
    w, platform = await witnessed(repo_root, tmp_path, faults=("comms-mcp:error_rate=1.0",))
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert platform.seen == ["set_weights {10}", "rollback"]
    assert (await w.store.load("r-test")).phase is Phase.ROLLED_BACK


async def test_deployment_actions_are_audited(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    assert await run.execute(w.ctx) is Outcome.PROMOTED
    actions = w.audit.actions
    assert actions[0] == "run.start"
    assert actions.count("stage.start") == 7
    assert actions.count("stage.finish") == 7
    assert "traffic.weights" in actions
    assert actions.count("release.promote") == 2  # the switch to 100 %, then the run's outcome
    assert all(target == "release/v1.1.0" for _, target, _, _ in w.audit.entries)


async def test_a_broken_audit_trail_is_noted_but_never_stops_a_rollback(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, faults=("crm-mcp:crash=1",))
    w.audit.fail = True
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    assert any("audit of release.rollback failed" in note for note in w.record.notes)


async def test_one_active_run_per_environment(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    second = RunRecord("r-other", "v1.2.0", "memory", "test", w.record.created_at)
    await w.store.create(second)
    other = await world(repo_root, tmp_path, store=w.store, platform=w.platform, record=second)
    started = asyncio.Event()

    async def slow_work() -> None:
        started.set()
        await asyncio.sleep(0.2)

    first = asyncio.create_task(drive(w.ctx, policy("one"), slow_work))
    await started.wait()
    with pytest.raises(LeaseHeldError) as held:
        await drive(other.ctx, policy("two"), slow_work)
    assert held.value.run_id == "r-test"
    assert "r-test" in str(held.value)
    await first


@pytest.mark.parametrize(
    ("action", "outcome"), [(RequestAction.ABORT, Outcome.ABORTED), (RequestAction.ROLLBACK, Outcome.ROLLED_BACK)]
)
async def test_a_stop_request_rolls_a_running_canary_back(
    repo_root: Path, tmp_path: Path, action: RequestAction, outcome: Outcome
) -> None:
    w = await world(repo_root, tmp_path, analysis=LONG_STEP)

    async def ask_once_the_canary_runs() -> None:
        while w.record.stage("canary-deploy").status is not StageStatus.RUNNING or not w.record.weights:
            await asyncio.sleep(0.01)
        await w.store.request("r-test", action, "alice", "dashboard looks wrong")

    asker = asyncio.create_task(ask_once_the_canary_runs())
    result = await asyncio.wait_for(drive(w.ctx, policy(), lambda: run.execute(w.ctx)), timeout=20)
    await asker
    assert result is outcome
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    assert w.record.rollback is not None
    assert "requested by alice: dashboard looks wrong" in w.record.rollback.reason
    assert (await w.store.active("test-env")) is None  # a finished run frees the environment


async def test_a_process_that_lost_its_lease_stops_without_touching_the_platform(
    repo_root: Path, tmp_path: Path
) -> None:
    w = await world(repo_root, tmp_path, analysis=LONG_STEP)
    owner = asyncio.create_task(drive(w.ctx, policy("first", ttl_s=0.3, heartbeat_s=0.05), lambda: run.execute(w.ctx)))
    while not w.record.weights:
        await asyncio.sleep(0.01)
    w.store.kill_holder("test-env")  # the first process looks dead (its session ended) ...
    rescuer = await world(repo_root, tmp_path, store=w.store, platform=w.platform, record=await w.store.load("r-test"))
    lease = await w.store.acquire("test-env", "r-test", "second", 5.0)  # ... so a resume takes the run over
    assert lease.taken_over_from == "first"
    calls_before = list(w.platform.calls)
    with pytest.raises(RunFencedError):
        await asyncio.wait_for(owner, timeout=5)
    assert "rollback" not in w.platform.calls[len(calls_before) :]  # the new owner decides, not the old one
    assert rescuer.record.phase is Phase.RUNNING


async def test_resume_rolls_back_an_interrupted_canary(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    for name in ("lint-test", "build-cache"):
        await run.execute(w.ctx, only=name)
    # The process died half way through canary-deploy: canaries up at 10 %, the stage recorded as running.
    artifact = w.ctx.artifact
    assert artifact is not None
    await w.platform.deploy_canary(CanarySpec("r-test", "v1.1.0", artifact))
    w.record.stage("canary-deploy").status = StageStatus.RUNNING
    await w.platform.set_weights(dict.fromkeys(w.ctx.services, 10))
    await w.store.save(w.record)
    # A new process picks the run up from the store alone.
    later = await world(repo_root, tmp_path, store=w.store, platform=w.platform, record=await w.store.load("r-test"))
    assert await drive(later.ctx, policy("rescuer"), lambda: recovery.resume(later.ctx, "bob")) is Outcome.ROLLED_BACK
    assert {weight for _, _, weight in versions(w.platform)} == {0}
    assert "cannot vouch" in (later.record.rollback.reason if later.record.rollback else "")
    assert "run.resume" in later.audit.actions


async def test_resume_continues_after_an_interrupted_migration(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    for name in ("lint-test", "build-cache", "canary-deploy"):
        await run.execute(w.ctx, only=name)
    w.record.stage("migrate-neon").status = StageStatus.RUNNING
    await w.store.save(w.record)
    later = await world(repo_root, tmp_path, store=w.store, platform=w.platform, record=await w.store.load("r-test"))
    assert await drive(later.ctx, policy("rescuer"), lambda: recovery.resume(later.ctx, "bob")) is Outcome.PROMOTED
    assert later.migrator.applied == ["001_audit"]
    assert [s.status for s in later.record.stages] == [StageStatus.PASSED] * 7
    assert versions(w.platform) == {("v1.1.0", None, 0)}


async def test_stages_out_of_order_are_refused_before_anything_changes(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    with pytest.raises(run.OutOfOrderError, match="the next stage is lint-test"):
        await run.execute(w.ctx, only="canary-deploy")
    assert w.platform.calls == []
    assert (await w.store.load("r-test")).phase is Phase.PLANNED


async def test_the_manual_gate_waits_for_approval_while_watching_the_canary(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, canary={"steps": [10], "manual_gate": True})

    async def approve_when_waiting() -> None:
        while not any(e.message.startswith("waiting for approval") for e in w.events):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # still waiting: good data alone does not promote
        assert w.platform.calls.count("promote") == 0
        await w.store.request("r-test", RequestAction.PROMOTE, "dave", "numbers look right")

    approver = asyncio.create_task(approve_when_waiting())
    assert await asyncio.wait_for(run.execute(w.ctx), timeout=20) is Outcome.PROMOTED
    await approver
    assert any("approved by dave: numbers look right" in e.message for e in w.events)
    assert "release.gate" in w.audit.actions
    assert "release.approve" in w.audit.actions


async def test_a_canary_that_goes_bad_at_the_gate_is_rolled_back(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, canary={"steps": [10], "manual_gate": True})

    async def break_it_while_waiting() -> None:
        while not any(e.message.startswith("waiting for approval") for e in w.events):
            await asyncio.sleep(0.01)
        w.platform.crashed.add(("comms-mcp", "canary"))

    breaker = asyncio.create_task(break_it_while_waiting())
    assert await asyncio.wait_for(run.execute(w.ctx), timeout=20) is Outcome.ROLLED_BACK
    await breaker
    assert (
        "while waiting for approval: workload not running: comms-mcp (canary)" in w.record.stage("full-rollout").detail
    )
    assert versions(w.platform) == {("v1.0.0", None, 0)}


async def test_a_promotion_resolves_the_alerts_of_the_failures_before_it(repo_root: Path, tmp_path: Path) -> None:
    bad = await world(repo_root, tmp_path, faults=("comms-mcp:error_rate=1.0",))
    assert await run.execute(bad.ctx) is Outcome.ROLLED_BACK
    assert [n.kind for n in bad.notifier.sent] == ["started", "rolled_back"]
    good_record = RunRecord("r-good", "v1.2.0", "memory", "test", bad.record.created_at)
    await bad.store.create(good_record)
    good = await world(repo_root, tmp_path, store=bad.store, platform=bad.platform, record=good_record)
    assert await run.execute(good.ctx) is Outcome.PROMOTED
    promoted = good.notifier.sent[-1]
    assert (promoted.kind, promoted.resolves) == ("promoted", ("r-test",))
