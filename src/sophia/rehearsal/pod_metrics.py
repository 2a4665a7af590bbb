"""PodMetrics of the pods the rehearsal kubelet runs, measured as metrics-server measures a kubelet's containers.

metrics-server scrapes each kubelet every ``--metric-resolution`` (15 s by default) for every container's
cumulative CPU time and its memory working set, keeps the last two points, and serves CPU as the rate between them
(nanocores over the ``window`` between the points) and memory as the latest point. A container seen once is
reported over the window since it started (its CPU was zero then), so a fresh pod shows up after one scrape.

Here a container is its process tree (the container's process and everything it started): CPU is the tree's
user + system time, psutil's ``cpu_times`` (waited-for children included, as a cgroup counts them), and memory its
resident set. The store is filled by ``run`` every ``resolution_s`` and, for a container never seen before, by the
read that asks for it, so a pod is listed from the moment its container runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psutil

from sophia.engine.clock import Clock
from sophia.platforms.local.state import ProcessRef
from sophia.rehearsal.selectors import Selector

Object = dict[str, Any]
# (pod object, its container's process): the pods whose container runs now.
Running = Callable[[], Iterable[tuple[Object, ProcessRef]]]
RESOLUTION_S = 5.0  # metrics-server's --metric-resolution is 15 s; rehearsal pods live for a minute or two

log = logging.getLogger("sophia.rehearsal.pod_metrics")


@dataclass(frozen=True)
class Point:
    """One scrape of one container: when, its cumulative CPU seconds, and its resident bytes."""

    at: datetime
    cpu_s: float
    memory: int


@dataclass(frozen=True)
class Container:
    namespace: str
    pod: str
    uid: str
    labels: dict[str, str]
    name: str
    process: ProcessRef

    @classmethod
    def of(cls, pod: Object, process: ProcessRef) -> Container:
        meta = pod["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"], dict(meta.get("labels") or {}),
                   pod["spec"]["containers"][0]["name"], process)  # fmt: skip


def measure_all(processes: Sequence[ProcessRef]) -> list[tuple[float, int, datetime] | None]:
    """Each process tree's cumulative CPU seconds, resident bytes and start time (None for a process gone); the
    process table is read once for all of them."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    return [measure(process, children) for process in processes]


def measure(process: ProcessRef, children: Mapping[int, Sequence[int]]) -> tuple[float, int, datetime] | None:
    """The process tree's cumulative CPU seconds, resident bytes and start time; None when the process is gone."""
    try:
        root = psutil.Process(process.pid)
        if abs(root.create_time() - process.create_time) >= 0.5:
            return None  # the pid was reused
    except psutil.Error:
        return None
    cpu, memory, tree = 0.0, 0, [process.pid]
    while tree:
        pid = tree.pop()
        tree.extend(children.get(pid, ()))
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system + times.children_user + times.children_system
                memory += proc.memory_info().rss
        except psutil.Error:  # gone meanwhile: a child that exited counts in its parent's children times
            if pid == process.pid:
                return None
    return cpu, memory, datetime.fromtimestamp(process.create_time, UTC)


def nanocores(cores: float) -> str:
    return f"{max(0, round(cores * 1e9))}n"


def kibibytes(count: int) -> str:
    return f"{count // 1024}Ki"


def go_duration(seconds: float) -> str:
    """A duration as Go's ``time.Duration.String`` writes it (to the millisecond): ``15.012s``, ``1m0.5s``."""
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}" + (f".{fraction:03d}".rstrip("0") if fraction else "") + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    return f"{hours}h{text}" if hours else text


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodMetricsStore:
    """The last two points of every running container, and the PodMetrics they make."""

    def __init__(self, running: Running, clock: Clock, resolution_s: float = RESOLUTION_S) -> None:
        self._running = running
        self.clock = clock
        self.resolution_s = resolution_s
        self._points: dict[tuple[str, str], tuple[Point | None, Point]] = {}  # (pod uid, container) → (prev, last)
        self._started: dict[tuple[str, str], datetime] = {}
        self._containers: dict[tuple[str, str], Container] = {}
        self._scraping = asyncio.Lock()  # one scrape at a time: each decides what is due after the last one wrote

    async def run(self) -> None:
        """Scrape every ``resolution_s`` until cancelled."""
        while True:
            try:
                await self.scrape()
            except Exception:  # a scrape that failed is logged; the next one is due all the same
                log.exception("scraping the pods' usage failed")
            await self.clock.sleep(self.resolution_s)

    async def scrape(self, *, only_new: bool = False) -> None:
        """Measure every running container (with ``only_new``, those never measured); forget the ones gone."""
        async with self._scraping:
            await self._scrape(only_new=only_new)

    async def _scrape(self, *, only_new: bool) -> None:
        running = {(c.uid, c.name): c for c in (Container.of(pod, ref) for pod, ref in self._running())}
        now = self.clock.now()
        wanted = [c for key, c in running.items() if self._due(key, now, only_new=only_new)]
        if not only_new:
            for key in set(self._points) - set(running):
                self._forget(key)
        if not wanted:
            return
        measured = await asyncio.to_thread(measure_all, [c.process for c in wanted])
        at = self.clock.now()
        for container, found in zip(wanted, measured, strict=True):
            key = (container.uid, container.name)
            if found is None:
                self._forget(key)
                continue
            cpu_s, memory, started = found
            if self._containers.get(key, container).process != container.process:
                self._forget(key)  # the container was restarted: its counters began again
            last = self._points.get(key, (None, None))[1]
            self._points[key] = (last, Point(at, cpu_s, memory))
            self._started[key] = started
            self._containers[key] = container

    def _due(self, key: tuple[str, str], now: datetime, *, only_new: bool) -> bool:
        """Whether to measure the container now: when never measured; on a scrape, unless it was measured less than
        half a resolution ago (a read measured it first) — a CPU rate over a few milliseconds says nothing."""
        if key not in self._points:
            return True
        return not only_new and (now - self._points[key][1].at).total_seconds() >= self.resolution_s / 2

    def _forget(self, key: tuple[str, str]) -> None:
        self._points.pop(key, None)
        self._started.pop(key, None)
        self._containers.pop(key, None)

    async def list(self, namespace: str | None, selector: Selector, name: str | None = None) -> list[Object]:
        """The PodMetrics of the pods in ``namespace`` (None: all) whose labels match ``selector`` (and named
        ``name``, when given), sorted by namespace and name."""
        await self.scrape(only_new=True)
        pods: dict[tuple[str, str], list[Container]] = {}
        for container in self._containers.values():
            if namespace not in {None, container.namespace} or name not in {None, container.pod}:
                continue
            if selector.matches(container.labels):
                pods.setdefault((container.namespace, container.pod), []).append(container)
        return [self._pod_metrics(pods[key]) for key in sorted(pods)]

    def _pod_metrics(self, containers: Sequence[Container]) -> Object:
        first = containers[0]
        usage, latest, window = [], None, 0.0
        for container in sorted(containers, key=lambda c: c.name):
            key = (container.uid, container.name)
            previous, last = self._points[key]
            since = previous or Point(self._started[key], 0.0, 0)
            seconds = max((last.at - since.at).total_seconds(), 1e-3)
            cores = max(0.0, last.cpu_s - since.cpu_s) / seconds
            usage.append({"name": container.name, "usage": {"cpu": nanocores(cores), "memory": kibibytes(last.memory)}})
            latest, window = max(latest or last.at, last.at), max(window, seconds)
        return {
            "metadata": {"name": first.pod, "namespace": first.namespace, "labels": first.labels,
                         "creationTimestamp": timestamp(self.clock.now())},
            "timestamp": timestamp(latest or self.clock.now()),
            "window": go_duration(window),
            "containers": usage,
        }  # fmt: skip
