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
import subprocess, sys, time
burn, mib, children = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
while time.process_time() < burn:
    pass
held = b"\\x01" * (mib * 2**20)  # written, so every page is resident
# Children like us, holding as much; each ends when we do (its stdin is our pipe).
kids = [subprocess.Popen([sys.executable, "-c", sys.argv[4], "0", str(mib), "0", sys.argv[4]],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(children)]
for kid in kids:
    kid.stdout.readline()
print(time.process_time(), " ".join(str(kid.pid) for kid in kids), flush=True)
sys.stdin.read()  # until the test closes our stdin (or dies)
"""


@dataclass
class ContainerProcess:
    process: subprocess.Popen[str]
    ref: ProcessRef
    burned_s: float  # CPU seconds it had used when it said it was ready
    children: list[int]

    @property
    def rss(self) -> int:
        """The resident memory of the process and its children."""
        return sum(psutil.Process(pid).memory_info().rss for pid in [self.process.pid, *self.children])

    def cpu_s(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


@contextlib.contextmanager
def container_process(burn_s: float = 0.3, mib: int = 64, children: int = 0) -> Iterator[ContainerProcess]:
    """A process that has used at least ``burn_s`` CPU seconds and holds ``mib`` MiB more than an idle interpreter,
    with ``children`` child processes holding as much each."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(burn_s), str(mib), str(children), _SCRIPT],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=lifeline.die_with_parent(),  # noqa: PLW1509 - prctl only
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # bounded by the test's timeout; the child exits if we go
        assert line, "the container process exited before it was ready"
        burned, *kids = line.split()
        ref = ProcessRef(pid=process.pid, create_time=psutil.Process(process.pid).create_time())
        yield ContainerProcess(process, ref, float(burned), [int(kid) for kid in kids])
    finally:
        process.kill()
        process.wait(timeout=10)


def pod(name: str, namespace: str, container: str, **labels: str) -> dict[str, Any]:
    """A pod object as the API lists it, as far as the metrics API reads one."""
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}", "labels": labels},
            "spec": {"containers": [{"name": container, "image": "img"}]}}  # fmt: skip
