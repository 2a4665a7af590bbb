"""The route table: which track a request goes to, and changes that apply wholly or not at all."""

from __future__ import annotations

import pytest

from sophia.engine.model import Track
from sophia.platforms.local.router_table import Route, RouteError, RouteTable, UnknownServiceError, Upstream

STABLE = Upstream("http://127.0.0.1:19001", "v1.0.0")
CANARY = Upstream("http://127.0.0.1:19101", "v1.1.0")
S, C = Track.STABLE, Track.CANARY


def table_with(route: Route) -> RouteTable:
    table = RouteTable({"mcp-research": 18001, "comms-mcp": 18005})
    table.replace("mcp-research", route)
    return table


def picks(table: RouteTable, count: int, pinned: Track | None = None) -> list[Track | None]:
    chosen = [table.pick("mcp-research", pinned) for _ in range(count)]
    return [None if c is None else c[0] for c in chosen]


@pytest.mark.parametrize(
    ("route", "pinned", "expected"),
    [
        (Route(STABLE, CANARY, 10), None, [S] * 5 + [C] + [S] * 4),
        (Route(STABLE, CANARY, 0), None, [S] * 10),
        (Route(STABLE, CANARY, 100), None, [C] * 10),
        (Route(STABLE, None, 50), None, [S] * 10),  # no canary: all stable whatever the weight
        (Route(None, CANARY, 0), None, [C] * 10),  # no stable: the canary is all there is
        (Route(None, None, 0), None, [None] * 3),  # no route
        (Route(STABLE, CANARY, 0), C, [C] * 4),  # pinned to an existing track: weight ignored
        (Route(STABLE, CANARY, 100), S, [S] * 4),
        (Route(STABLE, None, 0), C, [S] * 4),  # pinned to a missing track: weighted choice
        (Route(None, None, 0), S, [None] * 2),
    ],
)
def test_track_choice(route: Route, pinned: Track | None, expected: list[Track | None]) -> None:
    assert picks(table_with(route), len(expected), pinned) == expected


def test_the_pick_carries_the_upstream_of_the_track() -> None:
    table = table_with(Route(STABLE, CANARY, 100))
    assert table.pick("mcp-research") == (C, CANARY)
    assert table.pick("mcp-research", S) == (S, STABLE)


def test_pinned_picks_leave_the_weighted_sequence_alone() -> None:
    table = table_with(Route(STABLE, CANARY, 10))
    sequence = []
    for _ in range(10):
        sequence += picks(table, 1)
        picks(table, 1, C)
    assert sequence == [S] * 5 + [C] + [S] * 4


def test_replacing_a_route_restarts_the_balancer() -> None:
    table = table_with(Route(STABLE, CANARY, 10))
    picks(table, 3)
    table.replace("mcp-research", Route(STABLE, CANARY, 10))
    assert picks(table, 10) == [S] * 5 + [C] + [S] * 4


def test_set_weights_keeps_the_upstreams_and_changes_only_the_weight() -> None:
    table = table_with(Route(STABLE, CANARY, 10))
    table.set_weights({"mcp-research": 50, "comms-mcp": 20})
    assert table.route("mcp-research") == Route(STABLE, CANARY, 50)
    assert table.route("comms-mcp") == Route(None, None, 20)


@pytest.mark.parametrize(
    ("batch", "error", "message"),
    [
        ({"mcp-research": 0, "nope": 0}, UnknownServiceError, r"unknown service\(s\): nope \(known: mcp-research, "),
        ({"mcp-research": 0, "comms-mcp": 101}, RouteError, "comms-mcp: canary weight must be from 0 to 100, got 101"),
        ({"mcp-research": 0, "comms-mcp": -1}, RouteError, "got -1"),
        ({"mcp-research": 0, "comms-mcp": 1.5}, RouteError, "must be an integer from 0 to 100, got 1.5"),
        ({"mcp-research": 0, "comms-mcp": True}, RouteError, "got True"),
        ({"mcp-research": 0, "comms-mcp": "5"}, RouteError, "got '5'"),
    ],
)
def test_a_bad_batch_changes_nothing(batch: dict[str, object], error: type[Exception], message: str) -> None:
    table = table_with(Route(STABLE, CANARY, 10))
    picks(table, 3)
    with pytest.raises(error, match=message):
        table.set_weights(batch)
    assert table.route("mcp-research") == Route(STABLE, CANARY, 10)
    assert table.route("comms-mcp") == Route()
    assert picks(table, 7) == [S, S, C, S, S, S, S]  # the balancer was not reset either


def test_unknown_services_are_refused_everywhere() -> None:
    table = RouteTable({"mcp-research": 18001})
    for action in (
        lambda: table.route("nope"),
        lambda: table.listen_port("nope"),
        lambda: table.replace("nope", Route()),
    ):
        with pytest.raises(UnknownServiceError, match="unknown service 'nope' \\(known: mcp-research\\)"):
            action()
    assert "mcp-research" in table
    assert "nope" not in table
    assert list(table) == ["mcp-research"]
    assert table.listen_port("mcp-research") == 18001


def test_a_route_refuses_a_weight_out_of_range() -> None:
    with pytest.raises(RouteError):
        Route(STABLE, CANARY, 101)
