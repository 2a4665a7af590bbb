"""The router daemon's routing state: one route per service, replaced atomically, read once per request.

A ``Route`` is immutable; changing a service's route swaps in a new ``Route`` object together with a fresh
balancer. Changes come from the admin API's thread and picks from the data plane's, so a change never edits the
table in place: it builds a new mapping of every service's entry and swaps it in with one assignment. Every
change — including a batch of weights for all services — is therefore applied between two picks, never half-way
through one: a request sees either the whole old table or the whole new one. Only the data plane picks, so a
balancer is only ever advanced by one thread.

Track choice, in order: a pinned track (request header) wins when that track is configured; otherwise, with both
tracks configured, smooth weighted round-robin over ``100 - canary_weight`` / ``canary_weight``; with one track
configured, that track takes everything (no canary → all stable, no stable → all canary); with none, no route.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from sophia.engine.model import Track
from sophia.platforms.local.router_wrr import SmoothWeightedRoundRobin

MAX_WEIGHT = 100


class RouteError(ValueError):
    """A route change was refused; nothing was changed. The message is meant for the caller."""


class UnknownServiceError(RouteError):
    """The change names a service this router does not front."""


@dataclass(frozen=True)
class Upstream:
    """One track's backend: where it listens and which release version it runs."""

    url: str
    version: str


@dataclass(frozen=True)
class Route:
    """A service's traffic split, like one Istio VirtualService with a stable and a canary destination."""

    stable: Upstream | None = None
    canary: Upstream | None = None
    canary_weight: int = 0

    def __post_init__(self) -> None:
        check_weight(self.canary_weight)

    def upstream(self, track: Track) -> Upstream | None:
        return self.stable if track is Track.STABLE else self.canary


def check_weight(weight: object) -> int:
    """A canary weight is an integer percentage, 0 to 100 (booleans are not integers here)."""
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise RouteError(f"canary weight must be an integer from 0 to {MAX_WEIGHT}, got {weight!r}")
    if not 0 <= weight <= MAX_WEIGHT:
        raise RouteError(f"canary weight must be from 0 to {MAX_WEIGHT}, got {weight}")
    return weight


def _balancer(route: Route) -> SmoothWeightedRoundRobin[Track]:
    if route.stable is not None and route.canary is not None:
        weights = [(Track.STABLE, MAX_WEIGHT - route.canary_weight), (Track.CANARY, route.canary_weight)]
    elif route.stable is not None:
        weights = [(Track.STABLE, 1)]
    elif route.canary is not None:
        weights = [(Track.CANARY, 1)]
    else:
        weights = []
    return SmoothWeightedRoundRobin(weights)


class _Entry:
    __slots__ = ("balancer", "route")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.balancer = _balancer(route)


class RouteTable:
    """Routes of a fixed set of services, each listening on its own port."""

    def __init__(self, listen_ports: Mapping[str, int]) -> None:
        self._ports = dict(listen_ports)
        self._entries = {service: _Entry(Route()) for service in self._ports}

    def __iter__(self) -> Iterator[str]:
        return iter(self._ports)

    def __contains__(self, service: object) -> bool:
        return service in self._ports

    def listen_port(self, service: str) -> int:
        self._known(service)
        return self._ports[service]

    def route(self, service: str) -> Route:
        self._known(service)
        return self._entries[service].route

    def replace(self, service: str, route: Route) -> None:
        """Install ``route`` for ``service``; the balancer restarts from a clean slate."""
        self._known(service)
        self._entries = {**self._entries, service: _Entry(route)}

    def check_weights(self, weights: Mapping[str, object]) -> dict[str, int]:
        """The weights as integers, or :class:`RouteError` naming the first unknown service or bad value."""
        unknown = sorted(s for s in weights if s not in self._ports)
        if unknown:
            raise UnknownServiceError(f"unknown service(s): {', '.join(unknown)} (known: {', '.join(self._ports)})")
        checked: dict[str, int] = {}
        for service, weight in weights.items():
            try:
                checked[service] = check_weight(weight)
            except RouteError as exc:
                raise RouteError(f"{service}: {exc}") from None
        return checked

    def set_weights(self, weights: Mapping[str, object]) -> None:
        """Set many canary weights at once: all are checked first, then all applied, or none on any error."""
        entries = dict(self._entries)
        for service, weight in self.check_weights(weights).items():
            current = entries[service].route
            if current.canary_weight != weight:
                entries[service] = _Entry(replace(current, canary_weight=weight))
        self._entries = entries

    def pick(self, service: str, pinned: Track | None = None) -> tuple[Track, Upstream] | None:
        """The track and upstream for the next request to ``service``; ``None`` when it has no route."""
        entry = self._entries[service]
        if pinned is not None:
            upstream = entry.route.upstream(pinned)
            if upstream is not None:
                return pinned, upstream
        track = entry.balancer.next()
        if track is None:
            return None
        chosen = entry.route.upstream(track)
        assert chosen is not None  # the balancer only holds configured tracks
        return track, chosen

    def _known(self, service: str) -> None:
        if service not in self._ports:
            raise UnknownServiceError(f"unknown service {service!r} (known: {', '.join(self._ports)})")
