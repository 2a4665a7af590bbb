"""Smooth weighted round-robin: nginx's upstream balancing algorithm, deterministic and exact.

Every pick adds each peer's weight to its running score, chooses the peer with the highest score (the first one
listed on a tie) and subtracts the total weight from the winner. Over any window of ``sum(weights)`` consecutive
picks every peer is chosen exactly ``weight`` times, and the picks are spread out rather than bunched: weights
90/10 send the 10th request of every 10 to the canary, weights 5/1/1 give ``a a b a c a a``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class SmoothWeightedRoundRobin(Generic[T]):
    """Picks among weighted peers; peers with weight 0 are never picked."""

    __slots__ = ("_current", "_peers", "_total", "_weights")

    def __init__(self, weighted: Sequence[tuple[T, int]]) -> None:
        if any(weight < 0 for _, weight in weighted):
            raise ValueError("weights must not be negative")
        live = [(peer, weight) for peer, weight in weighted if weight > 0]
        self._peers: list[T] = [peer for peer, _ in live]
        self._weights: list[int] = [weight for _, weight in live]
        self._current: list[int] = [0] * len(live)
        self._total = sum(self._weights)

    def next(self) -> T | None:
        """The next peer, or ``None`` when no peer has a positive weight."""
        if not self._peers:
            return None
        best = 0
        current = self._current
        for index, weight in enumerate(self._weights):
            current[index] += weight
            if current[index] > current[best]:
                best = index
        current[best] -= self._total
        return self._peers[best]
