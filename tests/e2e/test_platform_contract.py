"""One contract, every platform: the in-process platform, the local one and Kubernetes must keep the same books.

Each case runs against the memory platform, a running local platform, and the Kubernetes platform acting as its
deployer ServiceAccount on a real control plane (with the rehearsal kubelet marking pods ready).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from sophia import wiring
from sophia.config import Settings, load_config
from sophia.engine.clock import SystemClock
from sophia.engine.model import Artifact, ArtifactKind, CanarySpec, ServiceStatus, Track
from sophia.engine.ports import FencedError, Platform, PlatformError, PreflightError
from sophia.platforms.kubernetes import KubernetesPlatform
from sophia.platforms.memory import MemoryPlatform
from sophia.rehearsal.kubelet import Behaviour
from tests.e2e.conftest import Cli
from tests.fakes.cluster import Cluster, image_artifact, kube_world

pytestmark = pytest.mark.slow
VERSION = "v2.0.0"
NAMES = load_config(Path(__file__).parents[2] / "sophia.yaml").service_names
_tokens = itertools.count(int(time.time() * 1000))  # fencing tokens that only ever grow, across tests and platforms


@dataclass
class Subject:
    platform: Platform
    artifact: Artifact
    baseline: str
    # Makes one service's canary never become ready; gives the platform to try it with (one with a short progress
    # deadline). None where the platform cannot be made to.
    stall: Callable[[str], Platform] | None
    # The same platform configured against nothing that answers.
    unreachable: Callable[[], Platform]


async def _memory(_: pytest.FixtureRequest, __: AsyncExitStack) -> Subject:
    artifact = Artifact(ArtifactKind.WHEEL, "/nonexistent.whl", VERSION, "sha", "0" * 64, cache_hit=False)
    platform = MemoryPlatform(dict.fromkeys(NAMES, "v1.0.0"))
    return Subject(platform, artifact, "v1.0.0", None, lambda: MemoryPlatform({}, fail_on={"inspect"}))


async def _local(request: pytest.FixtureRequest, stack: AsyncExitStack) -> Subject:
    cli: Cli = request.getfixturevalue("cli")
    settings = load_config(cli.config)
    platform = wiring.create_platform(settings, SystemClock())
    stack.push_async_callback(platform.aclose)
    baseline = {s.stable_version for s in await platform.inspect()}.pop() or "v1.0.0"
    artifact = wiring.wheels(settings).build_sync(VERSION)

    async def restore() -> None:
        platform.fence(next(_tokens))
        await platform.rollback()
        await platform.retire_canary()

    stack.push_async_callback(restore)
    elsewhere = settings.model_copy(update={"local": settings.local.model_copy(update={"router_admin_port": 9})})
    return Subject(platform, artifact, baseline, None, lambda: wiring.create_platform(elsewhere, SystemClock()))


async def _kubernetes(request: pytest.FixtureRequest, stack: AsyncExitStack) -> Subject:
    cluster: Cluster = request.getfixturevalue("cluster")
    world = await stack.enter_async_context(kube_world(cluster))
    canary_namespace = world.namespaces[Track.CANARY]

    def stall(name: str) -> Platform:
        world.kubelet.hold(canary_namespace, name, Behaviour.NOT_READY)
        impatient = world.settings.kubernetes.model_copy(update={"progress_deadline_s": 6})
        platform = KubernetesPlatform(world.settings.model_copy(update={"kubernetes": impatient}), SystemClock())
        stack.push_async_callback(platform.aclose)
        return platform

    return Subject(
        world.platform,
        image_artifact(world.settings, VERSION),
        "v1.0.0",
        stall,
        lambda: _pointed_at_nothing(world.settings),
    )


def _pointed_at_nothing(settings: Settings) -> Platform:
    """The same deployer credentials, with the API server's address changed to a port nothing listens on."""
    path = settings.kubernetes.kubeconfig
    assert path is not None
    text = path.read_text()
    broken = path.with_name(path.stem + "-nowhere.kubeconfig")
    broken.write_text(text.replace(text.split("server: ")[1].split()[0], "https://127.0.0.1:9"))
    config = settings.kubernetes.model_copy(update={"kubeconfig": broken, "request_timeout_s": 2})
    return KubernetesPlatform(settings.model_copy(update={"kubernetes": config}), SystemClock())


SUBJECTS: dict[str, Callable[[pytest.FixtureRequest, AsyncExitStack], Awaitable[Subject]]] = {
    "memory": _memory,
    "local": _local,
    "kubernetes": _kubernetes,
}


@pytest.fixture(params=list(SUBJECTS))
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    async with AsyncExitStack() as stack:
        yield await SUBJECTS[request.param](request, stack)


def books(statuses: list[ServiceStatus]) -> set[tuple[str | None, str | None, int]]:
    return {(s.stable_version, s.canary_version, s.canary_weight) for s in statuses}


def spec(subject: Subject) -> CanarySpec:
    return CanarySpec("r-contract", VERSION, subject.artifact)


async def test_canary_weights_promotion_and_retirement(subject: Subject) -> None:
    platform, base = subject.platform, subject.baseline
    await platform.preflight()
    await platform.deploy_canary(spec(subject))
    statuses = await platform.inspect()
    assert books(statuses) == {(base, VERSION, 0)}
    assert all(s.canary is not None for s in statuses)
    assert all(s.canary.alive for s in statuses if s.canary)
    await platform.set_weights({s.name: 25 for s in statuses})
    assert books(await platform.inspect()) == {(base, VERSION, 25)}
    await platform.promote()
    assert books(await platform.inspect()) == {(VERSION, None, 0)}
    await platform.rollback()  # before the previous stable is retired: straight back to it
    assert {(s.stable_version, s.canary_weight) for s in await platform.inspect()} == {(base, 0)}
    await platform.retire_canary()
    assert books(await platform.inspect()) == {(base, None, 0)}


async def test_a_retired_promotion_stays_promoted(subject: Subject) -> None:
    platform = subject.platform
    await platform.deploy_canary(spec(subject))
    await platform.promote()
    await platform.retire_previous()
    await platform.rollback()  # nothing of this release is left to undo
    assert books(await platform.inspect()) == {(VERSION, None, 0)}


async def test_rollback_puts_every_weight_back_and_retire_stops_the_canaries(subject: Subject) -> None:
    platform, base = subject.platform, subject.baseline
    await platform.deploy_canary(spec(subject))
    await platform.set_weights({s.name: 10 for s in await platform.inspect()})
    await platform.rollback()
    assert books(await platform.inspect()) == {(base, VERSION, 0)}
    await platform.retire_canary()
    assert books(await platform.inspect()) == {(base, None, 0)}


async def test_workloads_report_liveness_and_the_labels_that_tell_them_apart(subject: Subject) -> None:
    platform = subject.platform
    await platform.deploy_canary(spec(subject))
    for status in await platform.inspect():
        stable, canary = status.stable, status.canary
        assert stable is not None
        assert canary is not None
        assert stable.alive
        assert canary.alive
        assert stable.labels
        assert stable.labels != canary.labels
        assert status.pinned(Track.CANARY).headers != status.pinned(Track.STABLE).headers


async def test_resources_name_only_live_workloads_and_local_processes_are_measured(subject: Subject) -> None:
    platform = subject.platform
    await platform.deploy_canary(spec(subject))
    names = {s.name for s in await platform.inspect()}
    usage = (await platform.resources()).usage
    assert all(u.service in names and u.memory_mib > 0 for u in usage), usage
    if platform.name == "local":  # every process, both tracks, with its memory and CPU
        assert {(u.service, u.track) for u in usage} == {(n, t) for n in names for t in Track}
        assert all(u.cpu_percent is not None and u.cpu_percent >= 0 for u in usage)


async def test_unknown_services_and_bad_weights_are_refused(subject: Subject) -> None:
    with pytest.raises(PlatformError, match="unknown"):
        await subject.platform.set_weights({"no-such-service": 10})
    with pytest.raises(PlatformError):
        await subject.platform.set_weights({"comms-mcp": 101})
    assert books(await subject.platform.inspect()) == {(subject.baseline, None, 0)}


OPERATIONS: dict[str, Callable[[Subject], Awaitable[None]]] = {
    "deploy_canary": lambda s: s.platform.deploy_canary(spec(s)),
    "set_weights": lambda s: s.platform.set_weights({"comms-mcp": 0}),
    "promote": lambda s: s.platform.promote(),
    "retire_previous": lambda s: s.platform.retire_previous(),
    "rollback": lambda s: s.platform.rollback(),
    "retire_canary": lambda s: s.platform.retire_canary(),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_every_mutating_operation_is_fenced(subject: Subject, operation: str) -> None:
    platform = subject.platform
    stale, newer = next(_tokens), next(_tokens)
    platform.fence(newer)
    await platform.set_weights({"comms-mcp": 0})  # the newer holder has changed something
    before = books(await platform.inspect())
    platform.fence(stale)
    with pytest.raises(FencedError, match="stale fence"):
        await OPERATIONS[operation](subject)
    assert books(await platform.inspect()) == before
    platform.fence(next(_tokens))


async def test_every_operation_can_be_repeated(subject: Subject) -> None:
    """A resumed run repeats the step it was in: twice must leave what once leaves."""
    platform, base = subject.platform, subject.baseline
    steps: list[tuple[Callable[[], Awaitable[None]], set[tuple[str | None, str | None, int]]]] = [
        (lambda: platform.deploy_canary(spec(subject)), {(base, VERSION, 0)}),
        (lambda: platform.set_weights(dict.fromkeys(NAMES, 10)), {(base, VERSION, 10)}),
        (platform.rollback, {(base, VERSION, 0)}),
        (platform.retire_canary, {(base, None, 0)}),
    ]
    for step, expected in steps:
        await step()
        await step()
        assert books(await platform.inspect()) == expected


async def test_a_canary_that_never_becomes_ready_fails_and_serves_nothing(subject: Subject) -> None:
    if subject.stall is None:
        pytest.skip("this platform cannot hold a canary not-ready")
    platform = subject.stall("crm-mcp")
    with pytest.raises(PlatformError, match="crm-mcp"):
        await platform.deploy_canary(spec(subject))
    assert books(await platform.inspect()) == {(subject.baseline, None, 0)}


async def test_an_unreachable_platform_says_so_with_platform_errors(subject: Subject) -> None:
    nowhere = subject.unreachable()
    try:
        with pytest.raises(PlatformError):
            await nowhere.inspect()
        with pytest.raises(PreflightError):
            await nowhere.preflight()
    finally:
        await nowhere.aclose()
