"""Pods as local processes: the rehearsal kubelet's container runtime.

Each bound pod gets a worker (as a real kubelet has pod workers) that runs its container from the pod spec: the
image resolved through the rehearsal registry to a release wheel, unpacked and started with the interpreter the
rehearsal runs on; the spec's args, its environment (``valueFrom.secretKeyRef`` read from the pod's namespace) and
its port, bound on the pod's own loopback address (``127.1.x.y``), so podIP:containerPort means what it means on a
cluster. The readiness probe (``httpGet``) decides Ready; the liveness probe's failures and the process's exits
restart it per ``restartPolicy`` with a growing back-off, reported as ``CrashLoopBackOff``. A pod being deleted
is drained first (the mesh stops sending to a terminating pod), then sent SIGTERM and given its grace period.

Probes run every ``periodSeconds`` once a container has been ready; before that, every few tenths of a second, so
a rehearsal does not wait a whole period for each fresh pod.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from sophia.build.registry import UnknownImageError, WheelRegistry
from sophia.platforms.local import supervisor
from sophia.platforms.local.instances import unpack_wheel
from sophia.platforms.local.state import ProcessRef
from sophia.rehearsal.kubelet import Behaviour, PodState

Object = dict[str, Any]
SecretReader = Callable[[str, str], Awaitable[Object | None]]  # (namespace, name) → Secret or None
STARTUP_PROBE_S = 0.2
DRAIN_S = 2.0  # a terminating pod keeps serving this long, while the mesh takes it out of rotation (preStop)
MAX_GRACE_S = 10.0
MAX_BACKOFF_S = 8.0
# Pods run below the mesh stand-in and the engine, as on a cluster pods run under CPU limits while the mesh's
# proxies and the control plane have CPU of their own: on one machine a burst of pod start-ups (a rollout of
# every service) must not starve the data plane that carries the traffic.
POD_NICENESS = 5
# At most this many containers start at once (each until it is first ready, or for STARTING_CAP_S): a service's
# start-up is a second of CPU, and twelve at once on two cores would leave the serving pods and the mesh none.
MAX_STARTING = 2
STARTING_CAP_S = 10.0


log = logging.getLogger("sophia.rehearsal.pods")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped looking after its pod", task.get_name(), exc_info=task.exception())


class _Slot:
    """One of the semaphore's start-up places: given back once, when the container is ready, has stopped, or has
    held it for ``STARTING_CAP_S``."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._held = True
        self._timer = asyncio.get_running_loop().call_later(STARTING_CAP_S, self.release)

    @classmethod
    async def take(cls, semaphore: asyncio.Semaphore) -> _Slot:
        await semaphore.acquire()
        return cls(semaphore)

    def release(self) -> None:
        if self._held:
            self._held = False
            self._timer.cancel()
            self._semaphore.release()


class ContainerConfigError(Exception):
    """The container cannot be started as specified (unknown image, missing Secret); reported, retried."""


@dataclass
class Probe:
    path: str
    port: int
    period_s: float
    timeout_s: float
    failure_threshold: int

    @classmethod
    def of(cls, spec: Object | None, ports: dict[str, int]) -> Probe | None:
        if not spec or "httpGet" not in spec:
            return None
        get = spec["httpGet"]
        port = get.get("port")
        number = ports.get(port, 0) if isinstance(port, str) else int(port)
        return cls(get.get("path", "/"), number, float(spec.get("periodSeconds", 10)),
                   float(spec.get("timeoutSeconds", 1)), int(spec.get("failureThreshold", 3)))  # fmt: skip


@dataclass
class Worker:
    """One pod's container, looked after until the pod goes away."""

    pod: Object
    ip: str
    behaviour: Behaviour = Behaviour.NOT_READY
    reason: str = ""
    restarts: int = 0
    process: ProcessRef | None = None
    stopping: bool = False
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        meta = self.pod["metadata"]
        return f"{meta['namespace']}/{meta['name']}"


class ProcessPods:
    """The ``PodRunner`` that really runs pods, with their files and logs under ``home``."""

    def __init__(self, home: Path, registry: WheelRegistry, secrets: SecretReader) -> None:
        self.home = home
        self._registry = registry
        self._secrets = secrets
        self._workers: dict[str, Worker] = {}
        self._detaching = False  # closing the runner leaves the containers running, as a kubelet restart does
        self._addresses = itertools.count(2)
        self._starting = asyncio.Semaphore(MAX_STARTING)
        self._http = httpx.AsyncClient(trust_env=False)
        self.on_change: Callable[[], None] = lambda: None  # told whenever a container's state changes

    def _set(self, worker: Worker, behaviour: Behaviour, reason: str = "") -> None:
        if (worker.behaviour, worker.reason) != (behaviour, reason):
            worker.behaviour, worker.reason = behaviour, reason
            self.on_change()

    async def sync(self, pod: Object) -> PodState:
        uid = pod["metadata"]["uid"]
        worker = self._workers.get(uid)
        if worker is None:
            n = next(self._addresses)
            worker = self._workers[uid] = Worker(pod, f"127.1.{n // 250}.{n % 250 + 2}")
            worker.task = asyncio.create_task(self._run(worker), name=f"pod:{worker.name}")
            worker.task.add_done_callback(_log_failure)
        return PodState(worker.behaviour, worker.ip, worker.reason, worker.restarts)

    async def remove(self, pod: Object) -> bool:
        """Begin stopping the pod's container; True once it has stopped (the pod object may then go)."""
        worker = self._workers.get(pod["metadata"]["uid"])
        if worker is None:
            return True
        if not worker.stopping and worker.task is not None:
            worker.stopping = True
            worker.task.cancel()
        if worker.stopped.is_set():
            del self._workers[pod["metadata"]["uid"]]
            return True
        return False

    def running(self) -> list[tuple[Object, ProcessRef]]:
        """Each pod whose container has a process now, with that process (what the metrics API measures)."""
        return [(w.pod, w.process) for w in self._workers.values() if w.process is not None and not w.stopped.is_set()]

    async def aclose(self) -> None:
        self._detaching = True
        for worker in self._workers.values():
            if worker.task is not None:
                worker.task.cancel()
        await asyncio.gather(*(w.task for w in self._workers.values() if w.task), return_exceptions=True)
        await self._http.aclose()

    # -- one pod ------------------------------------------------------------------------------------------------

    async def _run(self, worker: Worker) -> None:
        spec = worker.pod["spec"]
        container = spec["containers"][0]
        ports = {p.get("name", ""): int(p["containerPort"]) for p in container.get("ports", [])}
        readiness = Probe.of(container.get("readinessProbe"), ports)
        liveness = Probe.of(container.get("livenessProbe"), ports)
        grace = min(float(spec.get("terminationGracePeriodSeconds", 30)), MAX_GRACE_S)
        try:
            while True:
                slot = await _Slot.take(self._starting)
                try:
                    worker.process = await self._start(worker, container)
                except ContainerConfigError as exc:
                    self._set(worker, Behaviour.CRASH_LOOP, f"CreateContainerConfigError: {exc}")
                except (OSError, ValueError) as exc:  # unpacking or starting failed: reported, tried again
                    self._set(worker, Behaviour.CRASH_LOOP, f"RunContainerError: {type(exc).__name__}: {exc}")
                else:
                    self._set(worker, Behaviour.NOT_READY)
                    await self._watch(worker, readiness, liveness, slot)
                    worker.restarts += 1
                    self._set(worker, Behaviour.CRASH_LOOP, "CrashLoopBackOff")
                finally:
                    slot.release()
                if spec.get("restartPolicy", "Always") == "Never":
                    return
                await asyncio.sleep(min(MAX_BACKOFF_S, 0.5 * 2 ** min(worker.restarts, 5)))
        except asyncio.CancelledError:
            if not self._detaching:
                await self._stop(worker, grace)
            raise
        finally:
            worker.stopped.set()
            self.on_change()

    async def _start(self, worker: Worker, container: Object) -> ProcessRef:
        meta = worker.pod["metadata"]
        try:
            wheel = self._registry.resolve(container["image"])
        except UnknownImageError as exc:
            raise ContainerConfigError(str(exc)) from None
        site = await asyncio.to_thread(unpack_wheel, wheel, self.home / "sites" / wheel.parent.name)
        env = await self._environment(meta["namespace"], container.get("env", []))
        args = list(container.get("args", []))
        if "--host" in args:
            args[args.index("--host") + 1] = worker.ip
        argv = [sys.executable, "-m", "sophia.services", *args]
        log = self.home / "logs" / "pods" / f"{meta['namespace']}_{meta['name']}.log"
        ref = supervisor.spawn(argv, home=self.home, env={**env, "PYTHONPATH": str(site)}, log=log)
        with contextlib.suppress(psutil.Error):
            psutil.Process(ref.pid).nice(POD_NICENESS)
        return ref

    async def _environment(self, namespace: str, entries: list[Object]) -> dict[str, str]:
        env: dict[str, str] = {}
        for entry in entries:
            if "value" in entry:
                env[entry["name"]] = str(entry["value"])
                continue
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            secret = await self._secrets(namespace, ref["name"])
            data = (secret or {}).get("data") or {}
            if ref["key"] in data:
                env[entry["name"]] = base64.b64decode(data[ref["key"]]).decode()
            elif not ref.get("optional"):
                raise ContainerConfigError(f"secret {ref['name']!r} (key {ref['key']!r}) not found in {namespace}")
        return env

    async def _watch(self, worker: Worker, readiness: Probe | None, liveness: Probe | None, slot: _Slot) -> None:
        """Probe until the process exits or liveness fails (then kill it); give up the start-up slot once ready."""
        process = worker.process
        assert process is not None
        ready_fails = live_fails = 0
        been_ready = False
        last_live = time.monotonic()
        while supervisor.alive(process):
            if readiness is None or await self._probe(worker.ip, readiness):
                ready_fails, been_ready = 0, True
                slot.release()
                self._set(worker, Behaviour.READY)
            else:
                ready_fails += 1
                if not been_ready or ready_fails >= readiness.failure_threshold:
                    self._set(worker, Behaviour.NOT_READY)
            if liveness is not None and been_ready and time.monotonic() - last_live >= liveness.period_s:
                last_live = time.monotonic()
                live_fails = 0 if await self._probe(worker.ip, liveness) else live_fails + 1
                if live_fails >= liveness.failure_threshold:
                    await asyncio.to_thread(supervisor.stop, [process])
                    return
            await asyncio.sleep(readiness.period_s if been_ready and readiness else STARTUP_PROBE_S)
        self.on_change()

    async def _probe(self, ip: str, probe: Probe) -> bool:
        try:
            answer = await self._http.get(f"http://{ip}:{probe.port}{probe.path}", timeout=probe.timeout_s)
        except httpx.HTTPError:
            return False
        return 200 <= answer.status_code < 400

    async def _stop(self, worker: Worker, grace_s: float) -> None:
        self._set(worker, Behaviour.NOT_READY)
        if not supervisor.alive(worker.process):
            return
        await asyncio.sleep(DRAIN_S)
        process = worker.process
        assert process is not None
        await asyncio.to_thread(supervisor.stop, [process], grace_s)
