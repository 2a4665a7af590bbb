"""Connections for the Postgres store: a small pool, dedicated lease sessions, and password-free errors.

The first use opens one direct connection (so a bad host or password fails at once with libpq's own reason instead
of a pool timeout), brings the schema up to date with it, and then opens the pool. Every psycopg error leaves this
module as a :class:`StoreError` whose message has been scrubbed of the password; the driver's exception is not
chained, because some of its messages (a malformed DSN) quote the connection string.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from sophia.engine.store import StoreError, StoreUnavailableError
from sophia.store.redact import password_of, redact
from sophia.store.schema import ensure_schema

# A deploy must notice a dead database in seconds, not after the kernel's two-hour keepalive default.
_TCP = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class Database:
    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 4, connect_timeout_s: int = 10, wait_s: float = 10.0
    ) -> None:
        self._dsn = dsn
        self._secret = password_of(dsn)
        self._sizes = (min_size, max_size)
        self._connect_timeout_s = connect_timeout_s
        self._wait_s = wait_s
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._opening = asyncio.Lock()
        self.schema_version: int | None = None

    def where(self) -> str:
        """host:port/dbname, for humans — never the password."""
        try:
            params = conninfo_to_dict(self._dsn)
        except psycopg.Error:
            return "an unreadable database URL"
        return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"

    def kwargs(self, application: str) -> dict[str, Any]:
        return {"autocommit": True, "connect_timeout": self._connect_timeout_s, "application_name": application, **_TCP}

    async def connect(self, application: str) -> AsyncConnection[Any]:
        """A connection of its own (not from the pool): lease sessions hold advisory locks for their lifetime."""
        try:
            return await psycopg.AsyncConnection.connect(self._dsn, **self.kwargs(application))
        except psycopg.ProgrammingError as exc:  # raised before any I/O: the URL itself does not parse
            raise StoreError(f"the run store's database URL is invalid: {self.scrub(exc)}") from None
        except psycopg.Error as exc:
            with self.translated():
                raise exc

    async def ensure_schema(self) -> int:
        await self._ready()
        assert self.schema_version is not None
        return self.schema_version

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        pool = await self._ready()
        with self.translated():
            async with pool.connection() as conn:
                yield conn

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _ready(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        async with self._opening:
            if self._pool is None:
                conn = await self.connect("sophia-store")
                try:
                    with self.translated():
                        self.schema_version = await ensure_schema(conn)
                finally:
                    await conn.close()
                min_size, max_size = self._sizes
                pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                    self._dsn,
                    min_size=min_size,
                    max_size=max_size,
                    kwargs=self.kwargs("sophia-store"),
                    timeout=self._wait_s,
                    name="sophia-store",
                    open=False,
                )
                await pool.open(wait=False)
                self._pool = pool
            return self._pool

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Turn driver errors into store errors with the password scrubbed out."""
        try:
            yield
        except PoolTimeout:
            raise StoreUnavailableError(
                f"the run store's database did not give a connection within {self._wait_s:g}s"
            ) from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"the run store's database is unavailable: {self.scrub(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"the run store's database refused the operation: {self.scrub(exc)}") from None

    def scrub(self, exc: BaseException) -> str:
        text = str(exc).strip() or type(exc).__name__
        return redact(text, self._secret)
