"""Starts and stops the local platform's processes: one per service version, plus the router daemon.

Each service process gets a listening socket bound here on 127.0.0.1:0 and inherited by file descriptor, so there
is no window in which another program could take its port. Every process runs in its own session (process group)
so stopping it also stops anything it started, and carries ``SOPHIA_PLATFORM_HOME`` in its environment: the
platform finds its own processes by that mark, even one whose starter was killed before it could write it down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import psutil

from sophia import lifeline
from sophia.engine.clock import Clock
from sophia.platforms.local.state import ProcessRef

# The environment a service process sees: ours to set, nothing inherited but the basics (no stray secrets).
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
MARK = "SOPHIA_PLATFORM_HOME"


def alive(ref: ProcessRef | None) -> bool:
    if ref is None:
        return False
    try:
        proc = psutil.Process(ref.pid)
        return abs(proc.create_time() - ref.create_time) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def usage(ref: ProcessRef) -> tuple[float, float] | None:
    """A process's resident memory (MiB) and CPU (percent of one core, averaged since it started); None if gone."""
    try:
        proc = psutil.Process(ref.pid)
        with proc.oneshot():
            rss, times, started = proc.memory_info().rss, proc.cpu_times(), proc.create_time()
    except psutil.Error:
        return None
    lifetime = max(time.time() - started, 1e-3)
    return rss / 2**20, 100.0 * (times.user + times.system) / lifetime


def owned(home: Path) -> list[tuple[ProcessRef, dict[str, str]]]:
    """Every live process marked as started by the platform whose files are in ``home``, with its environment."""
    mark = str(home)
    found = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get(MARK) == mark and proc.pid != os.getpid():
            found.append((ProcessRef(pid=proc.pid, create_time=proc.info["create_time"]), env))
    return found


def spawn(
    argv: Sequence[str],
    *,
    home: Path,
    env: Mapping[str, str],
    log: Path,
    pass_fds: Sequence[int] = (),
    die_with_parent: bool = False,
) -> ProcessRef:
    """Start ``argv`` in its own session, marked as ours; with ``die_with_parent`` its life is tied to ours from
    its first instruction (tests use it so nothing they start can outlive them)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    base = {k: os.environ[k] for k in _INHERITED if k in os.environ} | {MARK: str(home)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env={**base, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            close_fds=True,
            preexec_fn=lifeline.die_with_parent() if die_with_parent else None,  # noqa: PLW1509 - prctl only
        )
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = time.time()
    return ProcessRef(pid=proc.pid, create_time=created)


def spawn_service(
    *, service: str, kind: str, site: Path, home: Path, env: Mapping[str, str], log: Path
) -> tuple[ProcessRef, int]:
    """Start one service version from an unpacked artifact; returns the process and its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        port: int = sock.getsockname()[1]
        fd = sock.fileno()
        os.set_inheritable(fd, True)
        argv = [sys.executable, "-m", "sophia.services", "--service", service, "--kind", kind, "--fd", str(fd)]
        ref = spawn(argv, home=home, env={**env, "PYTHONPATH": str(site)}, log=log, pass_fds=[fd])
    finally:
        sock.close()
    return ref, port


def stop(refs: Sequence[ProcessRef], timeout_s: float = 5.0) -> None:
    """SIGTERM every process group, wait, then SIGKILL whatever is left."""
    live = [r for r in refs if alive(r)]
    for ref in live:
        _signal_group(ref.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while live and time.monotonic() < deadline:
        _reap(live)
        live = [r for r in live if alive(r)]
        if live:
            time.sleep(0.02)
    for ref in live:
        _signal_group(ref.pid, signal.SIGKILL)
    _reap(live)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(refs: Sequence[ProcessRef]) -> None:
    """Collect exit statuses of our own children so they don't linger as zombies."""
    for ref in refs:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(ref.pid, os.WNOHANG)


async def wait_ready(ref: ProcessRef, url: str, timeout_s: float, log: Path, clock: Clock) -> None:
    """Poll ``url`` until it answers 200; fail early if the process exits."""
    deadline = clock.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1.0) as client:
        while True:
            if not alive(ref):
                raise RuntimeError(f"exited during start-up: {log_tail(log)}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if clock.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout_s:g}s: {log_tail(log)}")
            await clock.sleep(0.05)


def log_tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on the port (connections lingering in TIME_WAIT don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
