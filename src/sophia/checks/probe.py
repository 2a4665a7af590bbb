"""HTTP health probe: one GET on a connection of its own; any 2xx is healthy.

The verdict depends on the target alone, however many other targets are being probed and however many of them
hang, which is what a release engine needs at 200 services (400 targets):

* **A connection per probe**, opened for it and closed after it (``Connection: close``, as the kubelet probes).
  Nothing is pooled, so no probe ever waits for a connection another target holds, and an idle target holds no
  file descriptor. Accepting a connection is part of being healthy.
* **The deadline measures the target.** The whole exchange (connect, request, answer) has ``timeout_s``. When the
  deadline passes, the probe first looks at what has arrived: asyncio hands the event loop's received data to the
  probe before it runs the timers that fell due in the same pass, so an answer that arrived in time counts even
  when the engine was too busy to read it at once.
* **The engine's own limits are not the target's fault.** Out of file descriptors or local ports raises
  ``ProbeError`` with what ran out (``sophia.descriptors``), instead of reporting a failed target; the soft
  open-file limit is raised to the hard one when the probe is made.

The client is small on purpose: requests are built by hand and answers parsed with httptools (the parser uvicorn
uses). With httpx, 400 targets (300 of them hanging) took a quarter of a core and 1,200 took all of it, so timely
answers waited for the loop; this client takes a tenth and a fifth (``docs/scale.md``).
Host names are resolved once per ``RESOLVE_TTL_S`` per host, so probes do not queue for the resolver threads.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

from sophia import descriptors
from sophia.engine.health import ProbeError
from sophia.engine.model import ProbeResult

RESOLVE_TTL_S = 30.0
MAX_BODY = 64 * 1024  # an answer's body is read up to this much; its status is the verdict
CLOSE_GRACE_S = 1.0  # after the answer, the server closes first (its TIME_WAIT, not ours), or we do after this


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    tls: bool
    request_target: str  # path and query
    authority: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, port, parts.scheme == "https", path, parts.netloc.rpartition("@")[2])

    def request(self, headers: Mapping[str, str]) -> bytes:
        """The request's bytes; a ``Host`` among ``headers`` (a gateway's virtual host) replaces the URL's."""
        extra = {k: v for k, v in headers.items() if k.lower() != "host"}
        host = next((v for k, v in headers.items() if k.lower() == "host"), self.authority)
        lines = [f"GET {self.request_target} HTTP/1.1", f"Host: {host}", "User-Agent: sophia-health",
                 "Accept: */*", "Connection: close", *(f"{k}: {v}" for k, v in extra.items())]  # fmt: skip
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Exchange(asyncio.Protocol):
    """One request and its answer: ``answered`` is done once ``status`` (or ``error``) is in."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes) -> None:
        self.answered: asyncio.Future[None] = loop.create_future()
        self.status: int | None = None
        self.error: OSError | None = None
        self.transport: asyncio.Transport | None = None
        self._request = request
        self._parser = httptools.HttpResponseParser(self)
        self._headers_done = False
        self._body = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.answered.done():  # connected after the probe gave up: nobody is waiting any more
            transport.abort()
            return
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(ConnectionError(f"not an HTTP answer ({exc})"))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        if self._body > MAX_BODY:
            self._finish()

    def on_message_complete(self) -> None:
        self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        # An answer whose body runs until the connection closes is complete once its headers are in.
        self._finish(None if self._headers_done else ConnectionError("connection closed without an answer"))

    def _finish(self, error: OSError | None = None) -> None:
        if self.answered.done():
            return
        self.error = error
        self.status = None if error else self._parser.get_status_code()
        self.answered.set_result(None)


class _Resolver:
    """Addresses per (host, port), looked up once per TTL; concurrent lookups of one host share one."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._cache: dict[tuple[str, int], tuple[float, asyncio.Future[list[str]]]] = {}

    async def addresses(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[str]:
        now = loop.time()
        cached = self._cache.get((host, port))
        if cached and cached[0] > now and (not cached[1].done() or _succeeded(cached[1])):
            found = cached[1]
        else:
            found = asyncio.ensure_future(self._resolve(loop, host, port))
            found.add_done_callback(lambda f: f.cancelled() or f.exception())  # each caller sees a failure itself
            self._cache[(host, port)] = (now + self._ttl, found)
        return await asyncio.shield(found)  # a probe that gives up must not cancel the others' lookup

    @staticmethod
    async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[str]:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HttpProbe:
    """The HealthProbe port over plain asyncio connections (see the module's notes)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._resolver = _Resolver(RESOLVE_TTL_S)
        descriptors.raise_soft_limit()

    async def probe(self, url: str, timeout_s: float, *, headers: Mapping[str, str] | None = None) -> ProbeResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            target = _Target.parse(url)
        except ValueError as exc:
            return ProbeResult(False, None, 0.0, f"bad URL {url!r}: {exc}")
        exchange = _Exchange(loop, target.request(headers or {}))
        connected = asyncio.ensure_future(self._connect(loop, target, exchange))
        try:
            if not await _within(connected, started + timeout_s, loop):
                return ProbeResult(False, None, _ms(loop, started), f"no connection within {timeout_s:g}s")
            connected.result()  # raises why the connection failed
            if not await _within(exchange.answered, started + timeout_s, loop):
                return ProbeResult(False, None, _ms(loop, started), f"no answer within {timeout_s:g}s")
            if exchange.error is not None:
                raise exchange.error
            status = exchange.status or 0
        except OSError as exc:
            if descriptors.exhausted(exc):
                raise ProbeError(f"cannot probe {url}: {descriptors.describe(exc)}") from exc
            return ProbeResult(False, None, _ms(loop, started), f"unreachable ({_why(exc)})")
        finally:
            _close(exchange, loop)
        ok = 200 <= status < 300
        return ProbeResult(ok, status, _ms(loop, started), None if ok else f"HTTP {status}")

    async def _connect(self, loop: asyncio.AbstractEventLoop, target: _Target, exchange: _Exchange) -> None:
        """Connect to the first of the host's addresses that accepts (a name may give ::1 before 127.0.0.1)."""
        if _literal(target.host):
            hosts = [target.host]
        else:
            hosts = await self._resolver.addresses(loop, target.host, target.port)
        if target.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()  # one for every probe: building one loads the CA bundle
        context, name = (self._ssl, target.host) if target.tls else (None, None)
        for index, host in enumerate(hosts):
            try:
                await loop.create_connection(lambda: exchange, host, target.port, ssl=context, server_hostname=name)
            except OSError as exc:
                if descriptors.exhausted(exc) or index == len(hosts) - 1:
                    raise
            else:
                return

    async def aclose(self) -> None:
        """Nothing to release: every probe closes its own connection."""


async def _within(future: asyncio.Future[Any], deadline: float, loop: asyncio.AbstractEventLoop) -> bool:
    """Wait for ``future`` until ``deadline``; True if it is done then (its result or error is there to take)."""
    if not future.done():
        await asyncio.wait([future], timeout=max(0.0, deadline - loop.time()))
    if future.done():
        return True
    future.cancel()
    return False


def _close(exchange: _Exchange, loop: asyncio.AbstractEventLoop) -> None:
    exchange.answered.cancel()  # if still open: a connection made after this is dropped at once
    transport = exchange.transport
    if transport is None or transport.is_closing():
        return
    if exchange.answered.done() and exchange.status is not None:
        loop.call_later(CLOSE_GRACE_S, transport.close)  # the server was asked to close; let it go first
    else:
        transport.abort()  # a target that did not answer in time: drop the connection at once


def _succeeded(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _why(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host: {exc.strerror}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return type(exc).__name__ if type(exc) is not ConnectionError else str(exc)


def _ms(loop: asyncio.AbstractEventLoop, started: float) -> float:
    return round((loop.time() - started) * 1000, 2)
