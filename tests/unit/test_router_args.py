"""The daemon's command line and its all-or-nothing port binding."""

from __future__ import annotations

import socket

import pytest

from sophia.platforms.local.router import (
    DEFAULT_UPSTREAM_TIMEOUT_S,
    PortInUseError,
    RouterOptions,
    bind_all,
    parse_args,
)
from tests.conftest import free_port


def test_parse_args() -> None:
    options = parse_args(
        ["--admin-port", "18900", "--listen", "mcp-research=18001", "--listen", "comms-mcp=18005",
         "--upstream-timeout", "2.5"]
    )  # fmt: skip
    assert options == RouterOptions(18900, {"mcp-research": 18001, "comms-mcp": 18005}, 2.5)
    assert parse_args(["--admin-port", "1", "--listen", "ab=2"]).upstream_timeout_s == DEFAULT_UPSTREAM_TIMEOUT_S


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--admin-port", "18900", "--listen", "mcp-research"], "expected SERVICE=PORT"),
        (["--admin-port", "18900", "--listen", "mcp-research=x"], "'x' is not a port number"),
        (["--admin-port", "0", "--listen", "mcp-research=1"], "port 0 is outside 1..65535"),
        (["--admin-port", "5", "--listen", "a=1", "--listen", "a=2"], None),
        (["--admin-port", "5", "--listen", "ab=1", "--listen", "ab=2"], "service listed twice: ab"),
        (["--admin-port", "2", "--listen", "ab=2"], "port used twice: 2"),
        (["--admin-port", "2", "--listen", "ab=3", "--upstream-timeout", "-1"], "must be greater than 0"),
    ],
)
def test_bad_arguments(argv: list[str], message: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    if message:
        assert message in capsys.readouterr().err


def test_bind_all_binds_every_port_on_loopback() -> None:
    ports = [("admin API", free_port()), ("mcp-research", free_port())]
    sockets = bind_all(ports)
    try:
        assert [s.getsockname() for s in sockets] == [("127.0.0.1", p) for _, p in ports]
        assert all(s.proto == socket.IPPROTO_TCP for s in sockets)  # so asyncio sets TCP_NODELAY
    finally:
        for sock in sockets:
            sock.close()


def test_bind_all_binds_nothing_when_one_port_is_taken() -> None:
    first = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"cannot listen on 127.0.0.1:{busy} \\(comms-mcp\\): address already"):
            bind_all([("mcp-research", first), ("comms-mcp", busy)])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", first))  # released again
