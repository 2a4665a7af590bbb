"""The HTTP health probe against real servers: healthy, unhealthy, slow, hanging, silent, unreachable, TLS, and an
engine that is busy or out of file descriptors."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import pytest
import trustme

from sophia.checks.probe import HttpProbe
from tests.conftest import free_port
from tests.fakes.receivers import Reply, http_receiver
from tests.fakes.standins import REPO, StandIns


@pytest.mark.parametrize(
    ("reply", "ok", "status", "error"),
    [
        (Reply(200), True, 200, None),
        (Reply(204), True, 204, None),
        (Reply(503), False, 503, "HTTP 503"),
        (Reply(delay_s=2.0), False, None, "no answer within 0.2s"),
        (Reply(drop=True), False, None, "unreachable (connection closed without an answer)"),
    ],
)
async def test_probe_results(reply: Reply, ok: bool, status: int | None, error: str | None) -> None:
    probe = HttpProbe()
    with http_receiver(reply) as receiver:
        result = await probe.probe(receiver.url("/health"), 0.2)
        assert [r.path for r in receiver.requests] == ["/health"]
    await probe.aclose()
    assert (result.ok, result.status_code, result.error) == (ok, status, error)


async def test_it_sends_one_get_with_a_host_header_and_asks_to_close() -> None:
    with http_receiver() as receiver:
        result = await HttpProbe().probe(receiver.url("/health?deep=1"), 2.0, headers={"x-sophia-route": "canary"})
        (request,) = receiver.requests
    assert result.ok
    assert (request.method, request.path) == ("GET", "/health?deep=1")
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["connection"] == "close"
    assert request.headers["x-sophia-route"] == "canary"


async def test_a_given_host_header_is_the_one_sent() -> None:
    """Through a gateway the host is the service's virtual host, not the gateway's address."""
    with http_receiver() as receiver:
        result = await HttpProbe().probe(receiver.url("/health"), 2.0, headers={"Host": "comms-mcp.sophia.internal"})
        (request,) = receiver.requests
    assert result.ok
    assert request.headers["host"] == "comms-mcp.sophia.internal"
    assert [value for name, value in request.lines if name == "host"] == ["comms-mcp.sophia.internal"]


async def test_a_host_name_is_resolved_once_and_every_address_tried() -> None:
    """``localhost`` may resolve to ::1 before 127.0.0.1, where the server listens: the next address is tried."""
    probe = HttpProbe()
    with http_receiver() as receiver:
        results = await asyncio.gather(
            *(probe.probe(f"http://localhost:{receiver.port}/health", 5.0) for _ in range(3))
        )
        assert len(receiver.requests) == 3
    assert all(r.ok for r in results), results


async def test_an_unreachable_target_is_unhealthy() -> None:
    result = await HttpProbe().probe(f"http://127.0.0.1:{free_port()}/health", 1.0)
    assert not result.ok
    assert result.error == "unreachable (ConnectionRefusedError)"


async def test_a_bad_url_is_an_unhealthy_target_not_a_crash() -> None:
    result = await HttpProbe().probe("ftp://example.invalid/health", 1.0)
    assert not result.ok
    assert result.error is not None
    assert "bad URL" in result.error


async def test_hanging_and_silent_targets_time_out_each_in_their_own_way() -> None:
    """A target that accepts and never answers, and one that never accepts (its backlog full after two tries)."""
    probe = HttpProbe()
    with StandIns(hang=1, silent=1) as standins:
        (hanging,), (silent,) = standins.urls("hang"), standins.urls("silent")
        started = time.monotonic()
        results = await asyncio.gather(*(probe.probe(u + "/health", 0.5) for u in [hanging, silent, silent, silent]))
        elapsed = time.monotonic() - started
    errors = [r.error for r in results]
    assert errors[0] == "no answer within 0.5s"
    assert "no connection within 0.5s" in errors[1:]  # the silent one's backlog takes a connection or two first
    assert all(not r.ok for r in results)
    assert elapsed < 5  # each bounded by its own deadline


async def test_an_answer_that_arrived_in_time_counts_when_the_engine_was_busy() -> None:
    """The deadline measures the target: the engine's loop blocked past it does not turn a timely answer into a
    timeout."""
    probe = HttpProbe()
    with http_receiver(Reply(delay_s=0.3)) as receiver:
        task = asyncio.create_task(probe.probe(receiver.url("/health"), 1.5))
        waited = time.monotonic()
        while not receiver.requests:  # the request is out; the answer comes 0.3 s later
            assert time.monotonic() - waited < 10
            await asyncio.sleep(0.01)
        time.sleep(3.0)  # noqa: ASYNC251 - the engine busy (its loop blocked) while the answer arrives and the deadline passes
        result = await task
    assert result.ok, result


@pytest.fixture
async def tls_server() -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    """A real TLS server for ``localhost`` with a certificate from a test CA; yields its URL and a client context."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"https://localhost:{port}", client_context


async def test_tls_targets_are_verified(tls_server: tuple[str, ssl.SSLContext]) -> None:
    url, trusting = tls_server
    assert (await HttpProbe(ssl_context=trusting).probe(url + "/health", 5.0)).status_code == 200
    refused = await HttpProbe().probe(url + "/health", 5.0)  # the system's CAs do not know the test CA
    assert not refused.ok
    assert refused.error is not None
    assert refused.error.startswith("unreachable (TLS")


def test_out_of_file_descriptors_is_the_engines_error_not_the_targets() -> None:
    """With every descriptor in use, probing raises ProbeError saying what ran out, rather than failing the target."""
    script = textwrap.dedent(
        """
        import asyncio, resource, socket
        from sophia.checks.probe import HttpProbe
        from sophia.engine.health import ProbeError
        from tests.fakes.standins import StandIns

        async def main():
            with StandIns(answer=1) as standins:
                probe = HttpProbe()
                resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
                held = []
                try:
                    while True:
                        held.append(socket.socket())
                except OSError:
                    pass
                try:
                    result = await probe.probe(standins.urls("answer")[0] + "/health", 2.0)
                    print("RESULT", result)
                except ProbeError as exc:
                    print("ERROR", exc)

        asyncio.run(main())
        """
    )
    argv = [sys.executable, "-c", script]
    done = subprocess.run(argv, check=False, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("ERROR cannot probe http://127.0.0.1:"), done.stdout + done.stderr
    assert "out of file descriptors (64 open, limit 64, hard limit 64): raise it with ulimit -n" in done.stdout
