"""Open-file limits of this process: every connection is a file descriptor, and at 200 services there are many.

A process may raise its own soft limit up to the hard one that the administrator set; the engine, the router
daemon and the load generator all do so when they start (as Go's runtime does for every program), so the common
default soft limit of 1,024 is not what decides how many targets one engine can probe. When even the hard limit is
not enough, ``describe`` says how many descriptors are open and what the limits are, for an error a person can act on.
"""

from __future__ import annotations

import errno
import os
import resource

# Out of descriptors (this process, the whole system) or out of local ports: the engine's own limits, never a
# verdict on whoever it was trying to reach.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL})


def raise_soft_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard in {resource.RLIM_INFINITY, soft}:  # nothing to raise, or no finite ceiling to raise it to
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def open_count() -> int | None:
    """How many descriptors this process has open (None where the system does not say)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # less the one that reading the folder takes
        except OSError as exc:
            if exc.errno == errno.EMFILE:  # not even one left to look with: every one is open
                return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None


def exhausted(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the engine running out of descriptors or local ports."""
    return _code(exc) is not None


def describe(exc: BaseException) -> str:
    """One line for a person: what ran out, how much is in use, and what to raise."""
    code = _code(exc)
    if code == errno.EADDRNOTAVAIL:
        return "this machine has no local port left for a new connection (see net.ipv4.ip_local_port_range)"
    if code == errno.ENFILE:
        return "the system's table of open files is full (see fs.file-max)"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = open_count()
    used = f"{count} open, " if count is not None else ""
    return f"this process is out of file descriptors ({used}limit {soft}, hard limit {hard}): raise it with ulimit -n"


def _code(exc: BaseException) -> int | None:
    """The errno of the first exhaustion in ``exc``'s chain of causes (a few library layers deep, never a cycle)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in EXHAUSTED:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None
