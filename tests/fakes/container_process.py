"""A container's process for the metrics API's tests: a real child that burns a known amount of CPU, then holds a
known amount of resident memory until it is stopped (and dies with the test process, by the parent-death signal)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil

from sophia import lifeline
from sophia.platforms.local.state import ProcessRef

_SCRIPT = """
import sys, time
burn, mib = float(sys.argv[1]), int(sys.argv[2])
while time.process_time() < burn:
    pass
held = b"\\x01" * (mib * 2**20)  # written, so every page is resident
print(time.process_time(), flush=True)
sys.stdin.read()  # until the test closes our stdin (or dies)
"""


@dataclass
class ContainerProcess:
    process: subprocess.Popen[str]
    ref: ProcessRef
    burned_s: float  # CPU seconds it had used when it said it was ready

    @property
    def rss(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss

    def cpu_s(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


@contextlib.contextmanager
def container_process(burn_s: float = 0.3, mib: int = 64) -> Iterator[ContainerProcess]:
    """A process that has used at least ``burn_s`` CPU seconds and holds ``mib`` MiB more than an idle interpreter."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(burn_s), str(mib)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=lifeline.die_with_parent(),  # noqa: PLW1509 - prctl only
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # bounded by the test's timeout; the child exits if we go
        assert line, "the container process exited before it was ready"
        ref = ProcessRef(pid=process.pid, create_time=psutil.Process(process.pid).create_time())
        yield ContainerProcess(process, ref, float(line))
    finally:
        process.kill()
        process.wait(timeout=10)


def pod(name: str, namespace: str, container: str, **labels: str) -> dict[str, Any]:
    """A pod object as the API lists it, as far as the metrics API reads one."""
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}", "labels": labels},
            "spec": {"containers": [{"name": container, "image": "img"}]}}  # fmt: skip
