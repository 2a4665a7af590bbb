"""The load generator's pacing: how far behind its schedule it catches up, and what it gives up."""

from __future__ import annotations

import pytest

from sophia.checks.traffic import pace


@pytest.mark.parametrize(
    ("next_at", "now", "interval", "expected"),
    [
        (10.0, 9.5, 0.5, (10.0, 0)),  # ahead: wait for the slot
        (10.0, 10.0, 0.5, (10.0, 0)),
        (10.0, 10.6, 0.5, (10.0, 0)),  # a little behind: send now, catch up
        (10.0, 11.0, 0.5, (10.0, 0)),  # exactly the catch-up allowance
        (10.0, 11.01, 0.5, (10.5, 1)),  # beyond it: give up the oldest slot
        (10.0, 13.0, 0.5, (12.5, 5)),  # three seconds behind at 2 rps: five slots given up, one second caught up
        (10.0, 70.0, 0.25, (69.25, 237)),  # a minute's stall at 4 rps: no burst of 240 requests
    ],
)
def test_pace(next_at: float, now: float, interval: float, expected: tuple[float, int]) -> None:
    at, skipped = pace(next_at, now, interval)
    assert (round(at, 6), skipped) == expected
    assert now - at <= 1.0  # never more than the allowance behind afterwards
