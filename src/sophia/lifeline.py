"""Children that must not outlive the process that started them (the load generator, lint and test commands,
pg_dump and psql): their life is tied to their parent's from their first instruction.

Two ties, both in place before the child runs a single instruction of its own:

* the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG)``), set between fork and exec by ``die_with_parent``,
  which then checks that the parent is still the one that forked it (it may have died in between, before the
  signal was armed). Linux only; elsewhere the call is a no-op.
* where the child is ours (the load generator), a pipe whose write end only the parent holds: the child reads it
  to its end, and EOF — which nothing but the parent closing it, or dying, can cause — means stop.

The signal goes to the thread that forked the child, so spawn from the thread that lives as long as the parent
(the event loop's). The local platform's services, routers and Postgres are *meant* to outlive the command that
started them (``sophia local up`` returns); tests tie those too (``supervisor.spawn(die_with_parent=True)``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1

# Loaded once in the parent, so the child does as little as possible between fork and exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _arm(parent: int, signum: int) -> None:
    """In the child, before exec: the kernel sends ``signum`` when the parent (thread) goes; a parent already gone
    ends the child at once."""
    if _LIBC is not None and _LIBC.prctl(PR_SET_PDEATHSIG, signum) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess``/``asyncio`` that ties the child to the calling process."""
    return functools.partial(_arm, os.getpid(), signum)
