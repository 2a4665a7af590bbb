"""analytics-mcp: ``POST /query/neon`` (and the MCP tool ``query_neon``) runs one read-only SQL statement.

Layers, outermost first:

1. **Privilege.** The service connects as its own role (``ANALYTICS_DATABASE_URL``, ``ops/sql/002``), which can
   only SELECT the allowed schemas; it refuses to serve if the role can do more (``analytics_role.py``).
2. **Screening** with Postgres's parser (``sqlguard.py``): one SELECT / EXPLAIN / SHOW; no writes, row locks,
   denied functions, or relations outside the allowed schemas (unqualified names are placed by the server).
3. **Transaction.** ``READ ONLY``, ``statement_timeout``, ``search_path`` = the allowed schemas, always rolled
   back; afterwards ``pg_advisory_unlock_all()``, so no session lock outlives the request.
4. **Result limits.** A query runs wrapped as ``row_to_json`` through a server-side cursor: at most ``max_rows``
   rows and ``max_bytes`` in all (``truncated`` says there was more), and a row over ``max_row_bytes`` is never
   sent by the server at all. The caller's own wait is bounded too (the statement timeout plus a margin).

Parameters are ``$1 … $n`` with JSON scalars. Numeric values come back as strings (exact), floats as numbers,
dates and times in ISO 8601, bytea as ``\\x…``, JSON as JSON.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import psycopg
from fastapi import FastAPI
from psycopg import AsyncRawCursor, AsyncRawServerCursor
from pydantic import BaseModel, Field

from sophia.services.analytics_role import privilege_problems
from sophia.services.database import Database, DatabaseUnavailable, lost_connection
from sophia.services.limits import RequestBody
from sophia.services.sqlguard import QueryRejected, Screened, screen

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]
Scalar = None | bool | int | float | Annotated[str, Field(max_length=10_000)]
_NUMERIC_OIDS = frozenset({1700, 1231})  # numeric, numeric[]: exact, so returned as text
_PRIVILEGES_RECHECK_S = 60.0


@dataclass(frozen=True)
class QueryLimits:
    max_rows: int = 1000
    max_bytes: int = 4 * 1024 * 1024
    max_row_bytes: int = 256 * 1024
    timeout_ms: int = 5000


class QueryRequest(RequestBody):
    query: Annotated[str, Field(min_length=1, max_length=20_000, description="One read-only SQL statement")]
    params: Annotated[list[Scalar], Field(default_factory=list, max_length=100, description="Values for $1 … $n")]


class QueryResponse(BaseModel):
    ok: bool
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[JSONValue]]
    truncated: bool


def to_json_value(value: Any) -> JSONValue:
    """A JSON-serialisable form of a value loaded by psycopg (decimals, dates, uuids, bytea become strings)."""
    for types, convert in _JSON_CONVERSIONS:
        if isinstance(value, types):
            return convert(value)
    return str(value)  # Decimal, UUID, timedelta, ranges, network addresses, ...


_JSON_CONVERSIONS: tuple[tuple[type | tuple[type, ...], Callable[[Any], JSONValue]], ...] = (
    (dict, lambda v: {str(k): to_json_value(x) for k, x in v.items()}),
    ((list, tuple), lambda v: [to_json_value(x) for x in v]),
    (float, lambda v: v if math.isfinite(v) else str(v)),
    ((bool, int, str, type(None)), lambda v: v),
    ((dt.date, dt.time), lambda v: v.isoformat()),  # datetime is a date
    ((bytes, bytearray, memoryview), lambda v: "\\x" + bytes(v).hex()),  # Postgres's own bytea text form
)


def _from_row_json(value: Any, exact: bool) -> JSONValue:
    """A value decoded from ``row_to_json`` (numbers parsed as Decimal): numeric columns as text, others as numbers."""
    if isinstance(value, list):
        return [_from_row_json(v, exact) for v in value]
    if isinstance(value, dict):
        return {k: _from_row_json(v, False) for k, v in value.items()}
    if isinstance(value, Decimal) or (exact and isinstance(value, int) and not isinstance(value, bool)):
        return str(value) if exact else float(value)
    result: JSONValue = value
    return result


def _wrapped(sql: str, max_row_bytes: int) -> str:
    """``sql`` as one JSON array per row; a row over ``max_row_bytes`` comes back as NULL with its size."""
    # The caller's own statement, by design: screened by sqlguard, run by the read-only role, never interpolated.
    return (
        "SELECT CASE WHEN octet_length(s.r) <= " + str(int(max_row_bytes)) + " THEN s.r END, octet_length(s.r)"  # noqa: S608
        " FROM (SELECT coalesce((SELECT json_agg(e.value ORDER BY e.n)"
        " FROM json_each(row_to_json(t)) WITH ORDINALITY AS e(key, value, n)), '[]')::text AS r"
        " FROM (\n" + sql + "\n) AS t) AS s"
    )


async def _check_relations(
    conn: psycopg.AsyncConnection[Any], names: tuple[str, ...], schemas: tuple[str, ...]
) -> None:
    if not names:
        return
    cursor = await conn.execute(
        "SELECT r.name, n.nspname FROM unnest(%s::text[]) AS r(name)"
        " JOIN pg_class c ON c.oid = to_regclass(quote_ident(r.name)) JOIN pg_namespace n ON n.oid = c.relnamespace",
        (list(names),),
    )
    outside = [f"{name} (in {schema})" for name, schema in await cursor.fetchall() if schema not in schemas]
    if outside:
        raise QueryRejected(f"only the schemas {', '.join(schemas)} can be read, not {', '.join(outside)}")


async def _fetch_query(
    conn: psycopg.AsyncConnection[Any], sql: str, params: list[Any], limits: QueryLimits
) -> QueryResult:
    async with AsyncRawServerCursor(conn, "sophia_describe") as described:
        await described.execute(sql, params)  # DECLARE only: planned, not run
        description = described.description or []
    exact = [column.type_code in _NUMERIC_OIDS for column in description]
    rows: list[list[JSONValue]] = []
    total, truncated = 0, False
    async with AsyncRawServerCursor(conn, "sophia_query") as cursor:
        await cursor.execute(_wrapped(sql, limits.max_row_bytes), params)
        while not truncated:
            batch = await cursor.fetchmany(min(200, limits.max_rows + 1 - len(rows)))
            for text, size in batch:
                if text is None:
                    raise QueryRejected(f"row {len(rows) + 1} is {size} bytes, over {limits.max_row_bytes}")
                total += size
                if len(rows) == limits.max_rows or total > limits.max_bytes:
                    truncated = True
                    break
                values = json.loads(text, parse_float=Decimal)
                rows.append([_from_row_json(v, e) for v, e in zip(values, exact, strict=True)])
            if not batch:
                break
    return QueryResult([c.name for c in description], rows, truncated)


async def _fetch_plain(
    conn: psycopg.AsyncConnection[Any], sql: str, params: list[Any], limits: QueryLimits
) -> QueryResult:
    async with AsyncRawCursor(conn) as cursor:
        await cursor.execute(sql, params or None)
        fetched = await cursor.fetchmany(limits.max_rows + 1) if cursor.description else []
        columns = [c.name for c in cursor.description or []]
    rows = [[to_json_value(v) for v in row] for row in fetched[: limits.max_rows]]
    return QueryResult(columns, rows, len(fetched) > limits.max_rows)


async def run_read_only(
    conn: psycopg.AsyncConnection[Any],
    sql: str,
    params: list[Any] | None = None,
    *,
    schemas: tuple[str, ...] = ("public",),
    limits: QueryLimits = QueryLimits(),
) -> QueryResult:
    """Screen ``sql``, then run it read-only in a transaction that is always rolled back (see the module doc)."""
    params = list(params or [])
    screened: Screened = screen(sql, len(params), schemas)
    statement = sql.rstrip().rstrip(";").rstrip()
    try:
        async with asyncio.timeout(limits.timeout_ms / 1000 + 2), conn.transaction(force_rollback=True):
            await conn.execute("SET TRANSACTION READ ONLY")
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, true), set_config('search_path', %s, true)",
                (f"{int(limits.timeout_ms)}ms", ", ".join(schemas)),
            )
            await _check_relations(conn, screened.unqualified, schemas)
            fetch = _fetch_query if screened.kind == "query" else _fetch_plain
            return await fetch(conn, statement, params, limits)
    except TimeoutError:
        raise QueryRejected(f"query failed: no answer within {limits.timeout_ms} ms") from None
    finally:
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            await conn.execute("SELECT pg_advisory_unlock_all()")


class Analytics:
    """The one implementation behind the HTTP endpoint and the MCP tool."""

    def __init__(self, database: Database, schemas: tuple[str, ...], limits: QueryLimits = QueryLimits()) -> None:
        self.database = database
        self.schemas = schemas
        self.limits = limits
        self._vetted_at: float | None = None

    async def query(self, request: QueryRequest) -> QueryResponse:
        async with self.database.connection() as conn:
            await self._require_least_privilege(conn)
            try:
                result = await run_read_only(conn, request.query, request.params, schemas=self.schemas,
                                             limits=self.limits)  # fmt: skip
            except psycopg.Error as exc:
                if lost_connection(exc):
                    raise
                raise self._rejection(exc) from None
        return QueryResponse(ok=True, columns=result.columns, rows=result.rows, row_count=len(result.rows),
                             truncated=result.truncated)  # fmt: skip

    async def readiness(self) -> str:
        """``"ok"`` when the analytics database answers and its role can only read; otherwise why not."""
        check = await self.database.ping()
        if check != "ok":
            return check
        try:
            async with self.database.connection() as conn:
                await self._require_least_privilege(conn, force=True)
        except DatabaseUnavailable as exc:
            return str(exc)
        except QueryRejected as exc:
            return exc.message
        return "ok"

    async def _require_least_privilege(self, conn: psycopg.AsyncConnection[Any], *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self._vetted_at is not None and now - self._vetted_at < _PRIVILEGES_RECHECK_S:
            return
        problems = await privilege_problems(conn)
        if problems:
            self._vetted_at = None
            raise DatabaseUnavailable("analytics role has more than read access: " + "; ".join(problems))
        self._vetted_at = now

    def _rejection(self, error: psycopg.Error) -> QueryRejected:
        message = self.database.redact(error.diag.message_primary or str(error))
        if error.sqlstate == "25006":  # read_only_sql_transaction
            return QueryRejected(f"read-only endpoint: write statements are refused ({message})", detail=message)
        return QueryRejected(f"query failed: {message}", detail=message)


def add_analytics_routes(app: FastAPI, analytics: Analytics) -> None:
    @app.post("/query/neon", tags=["analytics"])
    async def query_neon(request: QueryRequest) -> QueryResponse:
        """Run one read-only statement; returns its columns and at most ``max_rows`` rows."""
        return await analytics.query(request)
