"""A Neon-style proxy on 127.0.0.1: TLS, routing by endpoint id, in front of the embedded Postgres.

It speaks the Postgres wire protocol for the start of a connection, the way Neon's proxy does:

- it insists on TLS (answers the SSLRequest with ``S`` and does the handshake with a trustme certificate for
  ``*.<region>.aws.neon.tech``);
- it reads the endpoint id from the TLS SNI host name, or else from ``options=endpoint=<id>`` in the startup packet;
  with neither it refuses with Neon's own ``Endpoint ID is not specified`` text; when both are present and disagree it
  refuses with ``Inconsistent project name inferred from SNI``;
- it can play a suspended compute: the next ``cold_starts`` connections get ``Couldn't connect to compute node``;
- it routes the endpoint to a database of the embedded server (``routes``), strips the ``endpoint=`` option (Postgres
  would reject it), forwards the startup packet over plain TCP and then pipes bytes both ways, so authentication
  (SCRAM) and everything after it is the real server's.

Every startup is recorded in ``log`` so tests can assert what the client actually sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MISSING_ENDPOINT = (
    "Endpoint ID is not specified. Either please upgrade the postgres client library (libpq) for SNI support or pass "
    "the endpoint ID (first part of the domain name) as a parameter: '?options=endpoint%3D<endpoint-id>'. "
    "See more at https://neon.tech/sni"
)
COLD = "Couldn't connect to compute node"


@dataclass
class Startup:
    sni: str | None
    option_endpoint: str | None
    endpoint: str | None
    user: str | None
    database: str | None
    outcome: str  # "routed" or the refusal text


@dataclass
class NeonProxy:
    upstream_port: int
    cert_file: Path
    key_file: Path
    region: str = "us-east-1"
    upstream_host: str = "127.0.0.1"
    routes: dict[str, str] = field(default_factory=dict)  # endpoint id -> database; unrouted keeps the client's
    cold_starts: int = 0
    log: list[Startup] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="neon-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._sni: dict[int, str | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def suffix(self) -> str:
        return f".{self.region}.aws.neon.tech"

    def host_for(self, endpoint_id: str) -> str:
        return f"{endpoint_id}{self.suffix}"

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> NeonProxy:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        context.sni_callback = self._on_sni
        self._tls = context
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        future.result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> NeonProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_sni(self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        self._sni[id(ssl_object)] = server_name

    # -- one client ----------------------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = False
        while True:
            length, code = struct.unpack("!ii", await reader.readexactly(8))
            body = await reader.readexactly(length - 8)
            if code == SSL_REQUEST and not tls:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self._tls)
                tls = True
                continue
            if code == GSSENC_REQUEST:
                writer.write(b"N")
                await writer.drain()
                continue
            if code == CANCEL_REQUEST:
                return
            break
        if not tls:
            await _refuse(writer, "connection is insecure (try using `sslmode=require`)", "08P01")
            return
        params = _parse_params(body)
        sni = self._sni.pop(id(writer.get_extra_info("ssl_object")), None)
        await self._route(code, params, sni, writer, reader)

    async def _route(
        self,
        protocol: int,
        params: dict[str, str],
        sni: str | None,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
    ) -> None:
        sni_endpoint = sni[: -len(self.suffix)] if sni and sni.endswith(self.suffix) else None
        tokens = params.get("options", "").split()
        option_endpoint = next((t.split("=", 1)[1] for t in tokens if t.startswith("endpoint=")), None)
        remaining = " ".join(t for t in tokens if not t.startswith("endpoint="))
        endpoint = sni_endpoint or option_endpoint
        record = Startup(sni, option_endpoint, endpoint, params.get("user"), params.get("database"), "routed")
        self.log.append(record)
        refusal = None
        if sni_endpoint and option_endpoint and sni_endpoint != option_endpoint:
            refusal = (
                f"Inconsistent project name inferred from SNI ('{sni_endpoint}') "
                f"and project option ('{option_endpoint}')."
            )
        elif endpoint is None:
            refusal = MISSING_ENDPOINT
        elif self.cold_starts > 0:
            self.cold_starts -= 1
            refusal = COLD
        if refusal is not None:
            record.outcome = refusal
            await _refuse(writer, refusal, "XX000")
            return
        assert endpoint is not None
        if endpoint in self.routes:
            params["database"] = self.routes[endpoint]
        if remaining:
            params["options"] = remaining
        else:
            params.pop("options", None)
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        up_writer.write(_startup(protocol, params))
        await up_writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


def _parse_params(body: bytes) -> dict[str, str]:
    parts = body.split(b"\0")
    pairs = [p.decode() for p in parts]
    return {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2) if pairs[i]}


def _startup(protocol: int, params: dict[str, str]) -> bytes:
    payload = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!ii", len(payload) + 8, protocol) + payload


async def _refuse(writer: asyncio.StreamWriter, message: str, code: str) -> None:
    fields = (
        b"".join(
            tag + value.encode() + b"\0"
            for tag, value in ((b"S", "ERROR"), (b"V", "ERROR"), (b"C", code), (b"M", message))
        )
        + b"\0"
    )
    writer.write(b"E" + struct.pack("!i", len(fields) + 4) + fields)
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
