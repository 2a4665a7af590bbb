"""Runs lint and test commands as subprocesses, with a timeout and the project's virtualenv on PATH."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sophia import lifeline
from sophia.engine.model import CommandResult

_TAIL_BYTES = 8000


class SubprocessRunner:
    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        self._cwd = cwd
        base = dict(os.environ if env is None else env)
        # Tools installed next to the running interpreter (the venv's ruff, pytest) win over the system's.
        base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
        self._env = base

    async def run(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self._cwd,
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lifeline.die_with_parent(),  # a killed engine leaves no test run behind
            )
        except FileNotFoundError:
            return CommandResult(tuple(argv), 127, f"{argv[0]}: command not found", time.monotonic() - started)
        try:
            async with asyncio.timeout(timeout_s):
                output, _ = await proc.communicate()
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return CommandResult(tuple(argv), 124, f"timed out after {timeout_s:g}s", time.monotonic() - started)
        tail = output[-_TAIL_BYTES:].decode(errors="replace")
        return CommandResult(tuple(argv), proc.returncode or 0, tail, round(time.monotonic() - started, 3))
