"""The service's Postgres access: a small connection pool, opened on first use, and the readiness check.

We run up to 24 service processes against one server, so each process keeps at most two connections. Errors
that mean "the database cannot be reached" become ``DatabaseUnavailable`` with a short, secret-free reason;
SQL errors raised by the caller's own statements pass through unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from sophia.services.redact import redact, short_reason

MAX_CONNECTIONS = 2
ACQUIRE_TIMEOUT_S = 3.0
READY_TIMEOUT_S = 2.0
CONNECTION_LOST_STATES = ("08", "57P")  # connection_exception, operator_intervention (shutdown, cannot connect)

Connection = psycopg.AsyncConnection[Any]


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached; the message is short and contains no secrets."""


class DatabaseNotConfigured(DatabaseUnavailable):
    """The service has no ``DATABASE_URL``."""

    def __init__(self) -> None:
        super().__init__("database not configured (set DATABASE_URL)")


def lost_connection(error: psycopg.Error) -> bool:
    """Whether ``error`` means the server is gone, rather than that a statement was wrong."""
    if isinstance(error, psycopg.InterfaceError):
        return True
    return isinstance(error, psycopg.OperationalError) and (
        error.sqlstate is None or error.sqlstate.startswith(CONNECTION_LOST_STATES)
    )


class Database:
    """A lazily opened pool of at most ``max_size`` autocommit connections to ``dsn`` (``None``: not configured)."""

    def __init__(
        self,
        dsn: str | None,
        *,
        application_name: str,
        secrets: Sequence[str] = (),
        max_size: int = MAX_CONNECTIONS,
    ) -> None:
        self._dsn = dsn
        self._application_name = application_name[:63]
        self._secrets = list(secrets)
        self._max_size = max_size
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self._dsn is not None

    def redact(self, text: str) -> str:
        """``text`` with every secret of the DSN masked."""
        return redact(text, self._secrets)

    def reason(self, error: BaseException) -> str:
        """A short description of ``error`` with every secret of the DSN masked."""
        return short_reason(error, self._secrets)

    async def _open_pool(self) -> AsyncConnectionPool[Connection]:
        if self._dsn is None:
            raise DatabaseNotConfigured
        async with self._lock:
            if self._pool is None:
                pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
                    self._dsn,
                    min_size=1,
                    max_size=self._max_size,
                    open=False,
                    name=self._application_name,
                    kwargs={"autocommit": True, "application_name": self._application_name, "connect_timeout": 2},
                    check=AsyncConnectionPool.check_connection,
                    reconnect_timeout=10.0,
                )
                await pool.open(wait=False)
                self._pool = pool
            return self._pool

    @asynccontextmanager
    async def connection(self, timeout_s: float = ACQUIRE_TIMEOUT_S) -> AsyncIterator[Connection]:
        """Borrow a connection; raises ``DatabaseUnavailable`` when none can be had or the server goes away."""
        pool = await self._open_pool()
        try:
            async with pool.connection(timeout=timeout_s) as conn:
                yield conn
        except PoolTimeout:
            raise DatabaseUnavailable(f"no database connection within {timeout_s:g} s") from None
        except psycopg.Error as exc:
            if lost_connection(exc):
                raise DatabaseUnavailable(f"database connection lost: {self.reason(exc)}") from None
            raise

    async def ping(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """``"ok"`` when ``SELECT 1`` succeeds within about ``timeout_s``; otherwise why not (no secrets)."""
        if self._dsn is None:
            return "not configured"
        try:
            async with asyncio.timeout(timeout_s):
                async with self.connection(timeout_s=timeout_s / 2) as conn:
                    await conn.execute("SELECT 1")
                return "ok"
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        except DatabaseUnavailable:
            return await self._diagnose(timeout_s / 2)
        except psycopg.Error as exc:
            return self.reason(exc)

    async def _diagnose(self, timeout_s: float) -> str:
        """The pool had no connection to give: try one direct connection, which is ``"ok"`` or the server's reason.

        A busy pool (long queries on both connections) or one still connecting is not a database outage.
        """
        assert self._dsn is not None
        try:
            async with asyncio.timeout(timeout_s):
                conn = await psycopg.AsyncConnection.connect(self._dsn, connect_timeout=max(1, round(timeout_s)))
                async with conn:
                    await conn.execute("SELECT 1")
        except TimeoutError:
            return f"no connection within {timeout_s * 2:g} s"
        except psycopg.Error as exc:
            return self.reason(exc)
        return "ok"

    def pool_stats(self) -> tuple[int, int, int]:
        """Connections open, in use, and requests waiting for one (zeros before the pool opens)."""
        if self._pool is None:
            return 0, 0, 0
        stats = self._pool.get_stats()
        size = stats.get("pool_size", 0)
        return size, size - stats.get("pool_available", 0), stats.get("requests_waiting", 0)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close(timeout=1.0)
            self._pool = None
