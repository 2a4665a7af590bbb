"""Run one build tool (docker, buildah, a scanner) and keep its output, with secrets masked out of it.

A secret is only ever given to a tool on its standard input or in a file only we can read, never in its argv;
``secrets`` are masked in the output anyway, in case a tool echoes what it read.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

_TAIL = 20_000


class ToolError(RuntimeError):
    """A build tool exited non-zero (the message carries its masked output's tail)."""


@dataclass(frozen=True)
class ToolResult:
    argv: tuple[str, ...]
    returncode: int
    output: str


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run_tool(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    secrets: Iterable[str] = (),
    timeout_s: float = 3600,
    check: bool = True,
) -> ToolResult:
    hidden = [s for s in secrets if s]
    try:
        proc = subprocess.run(
            list(argv),
            env=dict(os.environ if env is None else env),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise ToolError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{argv[0]}: timed out after {timeout_s:g}s") from None
    output = mask((proc.stdout or "") + (proc.stderr or ""), hidden)
    result = ToolResult(tuple(argv), proc.returncode, output)
    if check and proc.returncode != 0:
        raise ToolError(f"`{' '.join(argv[:3])} ...` exited {proc.returncode}: {output.strip()[-1500:]}")
    return result


def tail(text: str) -> str:
    return text[-_TAIL:]
