"""An engine world in one process: real settings, the memory platform and store, simulated health and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sophia.config import Settings, load_config
from sophia.engine.clock import SystemClock
from sophia.engine.context import Ports, RunContext
from sophia.engine.dispatch import NotificationDispatcher
from sophia.engine.events import Event, EventBus
from sophia.engine.model import Fault
from sophia.engine.record import RunRecord, StageStatus
from sophia.platforms.memory import MemoryPlatform
from sophia.store import MemoryStore
from tests.fakes.simulation import (
    FakeBuilder,
    NoTraffic,
    RecordingAudit,
    RecordingCommands,
    RecordingNotifier,
    ScriptedMigrator,
    ScriptedSynthetics,
    SimulatedMetrics,
    SimulatedPools,
    SimulatedProbe,
)

TINY_PROFILE: dict[str, Any] = {
    "canary": {"steps": [10]},
    "health": {"interval_s": 0.01, "timeout_s": 0.05, "failure_threshold": 3},
    "analysis": {"step_duration_s": 0.3, "interval_s": 0.01, "min_requests": 5, "warmup_s": 0.02},
    "traffic": {"enabled": False},
    "rollout": {"bake_s": 0.03},
}


def settings(repo_root: Path, **profile: Any) -> Settings:
    tiny = {**TINY_PROFILE, **profile}
    return load_config(repo_root / "sophia.yaml", env={}, overrides={"profile": "test", "profiles": {"test": tiny}})


@dataclass
class World:
    ctx: RunContext
    platform: MemoryPlatform
    probe: SimulatedProbe
    pools: SimulatedPools
    metrics: SimulatedMetrics
    builder: FakeBuilder
    commands: RecordingCommands
    migrator: ScriptedMigrator
    synthetics: ScriptedSynthetics
    store: MemoryStore
    audit: RecordingAudit
    notifier: RecordingNotifier
    events: list[Event]

    @property
    def record(self) -> RunRecord:
        return self.ctx.record

    def stage(self, name: str) -> StageStatus:
        return self.record.stage(name).status


async def world(
    repo_root: Path,
    tmp_path: Path,
    *,
    faults: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    fail_on: set[str] | None = None,
    platform: MemoryPlatform | None = None,
    store: MemoryStore | None = None,
    record: RunRecord | None = None,
    **profile: Any,
) -> World:
    """A run context over in-process fakes; pass ``platform``/``store``/``record`` to play a second process."""
    config = settings(repo_root, **profile)
    clock = SystemClock()
    platform = platform or MemoryPlatform(dict.fromkeys(config.service_names, "v1.0.0"), fail_on=fail_on)
    store = store or MemoryStore(clock)
    probe, pools, metrics = SimulatedProbe(platform), SimulatedPools(), SimulatedMetrics(platform)
    parsed = tuple(Fault.parse(f, config.service_names) for f in faults)
    if record is None:
        record = RunRecord("r-test", "v1.1.0", "memory", "test", clock.now(), faults=list(faults), skip=list(skip))
        await store.create(record)
    events: list[Event] = []
    builder, commands, migrator = FakeBuilder(tmp_path), RecordingCommands(), ScriptedMigrator(clock=clock)
    synthetics, audit, notifier = ScriptedSynthetics(), RecordingAudit(), RecordingNotifier()
    ports = Ports(
        platform=platform,
        builder=builder,
        commands=commands,
        health=probe,
        metrics=metrics,
        pools=pools,
        traffic=NoTraffic(),
        migrator=migrator,
        synthetics=synthetics,
        notifications=NotificationDispatcher([notifier], clock, attempt_timeout_s=0.1, max_attempts=1, backoff_s=0.01),
        store=store,
        audit=audit,
        clock=clock,
    )
    ctx = RunContext(config, record, ports, EventBus(events.append), parsed)
    return World(
        ctx, platform, probe, pools, metrics, builder, commands, migrator, synthetics, store, audit, notifier, events
    )


def versions(platform: MemoryPlatform) -> set[tuple[str, str | None, int]]:
    return {(s.stable, s.canary, s.canary_weight) for s in platform.slots.values()}
