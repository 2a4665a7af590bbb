"""Telling the engine's own exhaustion (descriptors, local ports) from a target's failure, by the error's causes."""

from __future__ import annotations

import errno
import resource

import pytest

from sophia import descriptors


def _chained(inner: BaseException, outer: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "exhausted"),
    [
        (OSError(errno.EMFILE, "Too many open files"), True),
        (OSError(errno.ENFILE, "File table overflow"), True),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), True),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), False),
        (TimeoutError(), False),
        (_chained(OSError(errno.EMFILE, "Too many open files"), RuntimeError("connect failed")), True),
        (_chained(ConnectionResetError(errno.ECONNRESET, "reset"), RuntimeError("connect failed")), False),
        (ValueError("not an OS error"), False),
    ],
)
def test_exhaustion_is_recognised_through_causes(exc: BaseException, exhausted: bool) -> None:
    assert descriptors.exhausted(exc) is exhausted


def test_a_cycle_of_causes_ends() -> None:
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert descriptors.exhausted(a) is False


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.EMFILE, "this process is out of file descriptors ("),
        (errno.ENFILE, "the system's table of open files is full"),
        (errno.EADDRNOTAVAIL, "this machine has no local port left"),
    ],
)
def test_the_message_says_what_ran_out(code: int, says: str) -> None:
    assert descriptors.describe(OSError(code, "x")).startswith(says)


def test_the_descriptor_message_names_the_limits() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    message = descriptors.describe(OSError(errno.EMFILE, "x"))
    assert f"limit {soft}, hard limit {hard}): raise it with ulimit -n" in message
    assert " open, limit " in message  # how many are open, as the system counts them


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert descriptors.raise_soft_limit() == (soft if hard == resource.RLIM_INFINITY else hard)
