"""The engine's run loop on the Kubernetes platform (a real control plane, the platform as its deployer): a canary
whose rollout stalls fails canary-deploy at its progress deadline, and everything is rolled back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sophia.config import Settings
from sophia.engine import run
from sophia.engine.clock import SystemClock
from sophia.engine.context import Ports, RunContext
from sophia.engine.dispatch import NotificationDispatcher
from sophia.engine.events import Event, EventBus
from sophia.engine.model import Artifact, ProbeResult, ServiceStatus, Track, TrackSample
from sophia.engine.record import Outcome, RunRecord, StageStatus
from sophia.platforms.kubernetes import KubernetesPlatform, objects
from sophia.rehearsal.kubelet import Behaviour
from sophia.store import MemoryStore
from tests.fakes.cluster import BASELINE, Cluster, image_artifact, kube_world
from tests.fakes.engine_world import TINY_PROFILE
from tests.fakes.simulation import (
    NoTraffic,
    RecordingAudit,
    RecordingCommands,
    ScriptedMigrator,
    ScriptedSynthetics,
    SimulatedPools,
)

VERSION = "v2.0.0"


@dataclass
class ImageBuilder:
    settings: Settings
    builds: list[str] = field(default_factory=list)

    async def build(self, version: str) -> Artifact:
        self.builds.append(version)
        return image_artifact(self.settings, version)


class Unreachable:
    """Nothing is probed on a cluster without a gateway: the platform's readiness is the evidence."""

    async def probe(self, url: str, timeout_s: float, headers: Mapping[str, str] | None = None) -> ProbeResult:
        raise AssertionError(f"probed {url}: without a gateway the engine must not reach for pods")


class NoMetrics:
    async def sample(self, services: Sequence[ServiceStatus]) -> Mapping[tuple[str, Track], TrackSample]:
        return {}


async def test_a_stalled_canary_fails_canary_deploy_at_its_progress_deadline_and_rolls_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    async with kube_world(cluster, TINY_PROFILE) as world:
        config = world.settings.kubernetes.model_copy(update={"progress_deadline_s": 5})
        settings = world.settings.model_copy(update={"kubernetes": config, "state_dir": tmp_path})
        platform = KubernetesPlatform(settings, SystemClock())
        world.kubelet.hold(world.namespaces[Track.CANARY], "crm-mcp", Behaviour.NOT_READY)
        clock = SystemClock()
        store = MemoryStore(clock)
        record = RunRecord("r-stall", VERSION, "kubernetes", "test", clock.now(), skip=["lint-test"])
        await store.create(record)
        events: list[Event] = []
        ports = Ports(
            platform=platform, builder=ImageBuilder(settings), commands=RecordingCommands(), health=Unreachable(),
            metrics=NoMetrics(), pools=SimulatedPools(), traffic=NoTraffic(), migrator=ScriptedMigrator(),
            synthetics=ScriptedSynthetics(),
            notifications=NotificationDispatcher([], clock, attempt_timeout_s=0.1, max_attempts=1, backoff_s=0.01),
            store=store, audit=RecordingAudit(), clock=clock,
        )  # fmt: skip
        ctx = RunContext(settings, record, ports, EventBus(events.append))
        try:
            outcome = await run.execute(ctx)
        finally:
            await platform.aclose()

        assert outcome is Outcome.ROLLED_BACK
        canary = record.stage("canary-deploy")
        assert canary.status is StageStatus.FAILED
        assert "crm-mcp: ProgressDeadlineExceeded" in canary.detail
        assert canary.duration_s is not None
        assert canary.duration_s >= 5
        assert record.stage("migrate-neon").status is StageStatus.PENDING
        for vs in await world.admin.list("VirtualService", world.namespaces[Track.STABLE]):
            assert objects.canary_weight(vs, settings.kubernetes) == 0
        canaries = await world.admin.list("Deployment", world.namespaces[Track.CANARY])
        assert canaries
        assert {d["spec"]["replicas"] for d in canaries} == {0}
        assert {s.stable_version for s in await world.platform.inspect()} == {BASELINE}
