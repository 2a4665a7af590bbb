"""Smooth weighted round-robin, by a table of weights and the exact pick sequences nginx's algorithm gives."""

from __future__ import annotations

import pytest

from sophia.platforms.local.router_wrr import SmoothWeightedRoundRobin


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ({"a": 5, "b": 1, "c": 1}, "aabacaa"),  # nginx's own example
        ({"s": 90, "c": 10}, "ssssscssss" * 3),
        ({"s": 50, "c": 50}, "scscscscsc"),
        ({"s": 1, "c": 1}, "scsc"),
        ({"s": 100, "c": 0}, "ssssssssss"),
        ({"s": 0, "c": 100}, "cccccccccc"),
        ({"s": 75, "c": 25}, "sscssscs"),
        ({"s": 2, "c": 1}, "scsscs"),
        ({"x": 7}, "xxx"),
    ],
)
def test_pick_sequences(weights: dict[str, int], expected: str) -> None:
    balancer = SmoothWeightedRoundRobin(list(weights.items()))
    picks = "".join(str(balancer.next()) for _ in expected)
    assert picks == expected


@pytest.mark.parametrize(
    ("stable", "canary"),
    [(100, 0), (99, 1), (95, 5), (90, 10), (75, 25), (67, 33), (50, 50), (1, 99), (0, 100)],
)
def test_every_window_of_100_picks_splits_exactly_by_weight(stable: int, canary: int) -> None:
    balancer = SmoothWeightedRoundRobin([("stable", stable), ("canary", canary)])
    picks = [balancer.next() for _ in range(300)]
    for start in range(0, 201, 7):
        window = picks[start : start + 100]
        assert window.count("canary") == canary
        assert window.count("stable") == stable


def test_a_ten_percent_canary_gets_exactly_one_of_every_ten_consecutive_requests() -> None:
    balancer = SmoothWeightedRoundRobin([("stable", 90), ("canary", 10)])
    picks = [balancer.next() for _ in range(100)]
    assert all(picks[i : i + 10].count("canary") == 1 for i in range(0, 100, 10))


def test_no_positive_weight_picks_nothing() -> None:
    assert SmoothWeightedRoundRobin([]).next() is None
    assert SmoothWeightedRoundRobin([("a", 0), ("b", 0)]).next() is None


def test_negative_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        SmoothWeightedRoundRobin([("a", -1)])
