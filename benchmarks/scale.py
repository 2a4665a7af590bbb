"""The engine at 200 services: health probes, canary analysis, load and rollback, on one machine.

Builds ``sophia.yaml`` scaled to N services (``sophia.platforms.local.scaled``), starts the real router daemon with
a listener per service and one stand-ins process behind it (``tests.fakes.standins``: 2·N upstream ports, the canaries
of ``--hanging`` services hanging), deploys every canary at ``--weight`` percent, and then, for ``--duration``
seconds, does in this one process what the engine does during a canary step:

* the health monitor probes all 2·N targets (``HttpProbe``, interval and timeout as given);
* every analysis interval: ``inspect()``, one telemetry sample of every service, ``CanaryJudge.look``;
* the load generator (its own process, as in the engine) drives the profile's rate through every router;
* the step over (monitor closed, as when a step fails), with the traffic still flowing, ``--rollbacks`` times:
  every weight back up, then ``LocalPlatform.rollback()`` timed.

It prints what it saw and ends with one line:

    scale: services=200 false_failures=N round_max_s=N engine_rss_mib=N rollback_ms=N

``false_failures`` are failed probes of targets that answer; ``round_max_s`` the longest wait for news of any
target (the interval plus a probe's time on schedule); ``engine_rss_mib`` the peak resident memory of this process
(the engine: probes, analysis, platform client); ``rollback_ms`` the slowest rollback of all N services.

    .venv/bin/python benchmarks/scale.py [--services 200] [--hanging 50] [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from sophia.checks.probe import HttpProbe
from sophia.checks.traffic import LoadGenerator
from sophia.config import HealthPolicy
from sophia.engine.analysis import CanaryJudge
from sophia.engine.clock import SystemClock
from sophia.engine.health import HealthMonitor, TargetHealth
from sophia.engine.model import Track, TrafficTarget
from sophia.wiring import load_mix

if TYPE_CHECKING:
    from tests.fakes.scaled_platform import ScaledPlatform

REPO = Path(__file__).resolve().parent.parent

PORTS = iter(range(21000, 32000))


def free_port() -> int:
    import socket

    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 21000-31999")


class Watch:
    """Peak RSS and CPU time of this process."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak_rss = self.proc.memory_info().rss
        self.cpu0 = self.proc.cpu_times()
        self.t0 = time.monotonic()

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)

    def cpu_share(self) -> float:
        now = self.proc.cpu_times()
        used = now.user + now.system - self.cpu0.user - self.cpu0.system
        return used / (time.monotonic() - self.t0)


async def analysis_loop(world: ScaledPlatform, interval_s: float, until: float, watch: Watch) -> list[float]:
    """What ``analysis.watch`` does every interval, timed: inspect, one sample of every service, one look."""
    clock, platform, names = SystemClock(), world.platform, world.names
    policy = world.settings.policy.analysis
    judge = CanaryJudge(policy, names, await platform.sample(await platform.inspect()))
    started, looks = clock.monotonic(), []
    while clock.monotonic() < until:
        await clock.sleep(interval_s)
        began = time.perf_counter()
        statuses = await platform.inspect()
        assert all(s.stable and s.stable.alive and s.canary and s.canary.alive for s in statuses)
        judge.look(await platform.sample(statuses), clock.now(), clock.monotonic() - started)
        looks.append((time.perf_counter() - began) * 1000)
        watch.sample()
    return looks


async def rollbacks(world: ScaledPlatform, count: int, weight: int) -> list[float]:
    platform, names, times = world.platform, world.names, []
    for _ in range(count):
        await platform.set_weights(dict.fromkeys(names, weight))
        world.admin_calls.calls.clear()
        began = time.perf_counter()
        await platform.rollback()
        times.append((time.perf_counter() - began) * 1000)
        changes = [c for c in world.admin_calls.calls if not c.startswith("GET ")]  # the analysis reads meanwhile
        assert changes == ["PUT /weights"], changes
        routes = await platform.router.routes()
        assert {r.canary_weight for r in routes.values()} == {0}
        await asyncio.sleep(0.5)
    await platform.set_weights(dict.fromkeys(names, weight))
    return times


async def main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO))  # the stand-ins live with the tests' fakes
    from tests.fakes.scaled_platform import scaled_platform

    clock = SystemClock()
    health = HealthPolicy(interval_s=args.interval, timeout_s=args.timeout, failure_threshold=args.threshold)
    with tempfile.TemporaryDirectory(prefix="sophia-scale-") as home:
        async with scaled_platform(Path(home), args.services, args.hanging, free_port,
                                   total_rps=args.total_rps) as world:  # fmt: skip
            settings, platform = world.settings, world.platform
            await platform.set_weights(dict.fromkeys(world.names, args.weight))
            statuses = await platform.inspect()
            targets = [
                TargetHealth(s.name, track, w.probe)
                for s in statuses
                for track in Track
                if (w := s.workload(track)) is not None and w.probe is not None
            ]
            traffic = settings.policy.traffic
            kinds = {s.name: s.kind for s in settings.services}
            load = LoadGenerator(traffic.rps_per_service, traffic.timeout_s, load_mix(settings))
            watch = Watch()
            async with load.run([TrafficTarget(s.name, kinds[s.name], s.entry.url) for s in statuses]) as tally:
                began = clock.monotonic()
                async with HealthMonitor(HttpProbe(), clock, health, targets) as monitor:
                    looks = await analysis_loop(world, settings.policy.analysis.interval_s, began + args.duration,
                                                watch)  # fmt: skip
                    failing = {t.url for t in monitor.failing()}
                cpu = watch.cpu_share()
                # As in the engine: the step is over (monitor closed), the traffic still flowing while it rolls back.
                rolled = await rollbacks(world, args.rollbacks, args.weight)
                watch.sample()
                load_s = clock.monotonic() - began
    healthy = [t for t in targets if t.url not in world.hanging]
    hanging = [t for t in targets if t.url in world.hanging]
    false_failures = sum(t.failures for t in healthy)
    caught = sum(1 for t in hanging if t.url in failing)
    round_max = max(t.max_gap_s for t in targets)
    sent = sum(c.get("sent", 0) for c in tally.services.values())
    late = sum(c.get("late", 0) + c.get("dropped", 0) for c in tally.services.values())
    print(
        f"targets: {len(targets)} ({len(hanging)} hanging); health every {args.interval:g}s, "
        f"timeout {args.timeout:g}s, threshold {args.threshold}; {args.duration:g}s"
    )
    print(
        f"probes: {sum(t.probes for t in targets)}; healthy targets failing: {false_failures} failed probes; "
        f"hanging targets at the threshold: {caught} of {len(hanging)}"
    )
    print(f"slowest round: {round_max:.2f}s (target ≤ {args.interval + args.timeout + 0.5:g}s)")
    print(
        f"analysis looks: {len(looks)}, median {statistics.median(looks):.1f} ms, max {max(looks):.1f} ms "
        f"(inspect + one sample of {args.services} services + judge)"
    )
    print(f"load generator: {sent} requests ({sent / load_s:.0f}/s), {late} late or dropped")
    print(f"engine: peak RSS {watch.peak_rss / 2**20:.0f} MiB, CPU {cpu:.0%} of a core")
    print(
        f"rollback of {args.services} services (one router call): median {statistics.median(rolled):.1f} ms, "
        f"max {max(rolled):.1f} ms over {len(rolled)}"
    )
    print(
        f"scale: services={args.services} false_failures={false_failures} round_max_s={round_max:.2f} "
        f"engine_rss_mib={watch.peak_rss / 2**20:.0f} rollback_ms={max(rolled):.0f}"
    )
    return 0 if false_failures == 0 and caught == len(hanging) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--hanging", type=int, default=50, help="services whose canary hangs")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=2.0, help="health interval (s)")
    parser.add_argument("--timeout", type=float, default=2.0, help="health timeout (s)")
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--weight", type=int, default=10, help="canary weight (%%)")
    parser.add_argument("--total-rps", type=float, default=400.0, help="the load generator's total rate")
    parser.add_argument("--rollbacks", type=int, default=5)
    sys.exit(asyncio.run(main(parser.parse_args())))
