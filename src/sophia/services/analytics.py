"""analytics-mcp: ``POST /query/neon`` runs one read-only SQL statement and returns its rows as JSON.

Read-only is enforced in layers: the statement must start with a reading keyword (SELECT, WITH, VALUES, TABLE,
SHOW, EXPLAIN); it is sent alone through the extended protocol (so ``SELECT 1; COMMIT; DELETE ...`` is refused);
it runs inside a ``READ ONLY`` transaction with a statement timeout, which is always rolled back. Rows are
fetched through a server-side cursor, so a huge result never reaches the service's memory: at most ``max_rows``
are returned and ``truncated`` says whether there were more. For defence in depth, point ``DATABASE_URL`` of
analytics-mcp at a role without write privileges.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from sophia.services.database import Database, lost_connection
from sophia.services.errors import ServiceError

MAX_ROWS = 1000
STATEMENT_TIMEOUT_MS = 5000
READING_KEYWORDS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN"})
_CURSOR_KEYWORDS = frozenset({"SELECT", "WITH", "VALUES", "TABLE"})  # those DECLARE ... CURSOR FOR accepts
_READ_ONLY_VIOLATION = "25006"  # read_only_sql_transaction
_FEATURE_NOT_SUPPORTED = "0A000"

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


class QueryRequest(BaseModel):
    query: Annotated[str, Field(min_length=1, max_length=20_000, description="One read-only SQL statement")]


class QueryRejected(ServiceError):
    """The statement was refused or failed; ``detail`` carries Postgres's own message when there is one."""

    status = 400


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[JSONValue]]
    truncated: bool


def leading_keyword(sql: str) -> str:
    """The first keyword of ``sql`` in upper case, skipping whitespace, comments and opening parentheses."""
    i, n = 0, len(sql)
    while i < n:
        if sql[i].isspace() or sql[i] == "(":
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            break
    start = i
    while i < n and (sql[i].isalnum() or sql[i] == "_"):
        i += 1
    return sql[start:i].upper()


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


def check_reading_statement(sql: str) -> str:
    """The statement's keyword, or ``QueryRejected`` when it is not one that only reads."""
    keyword = leading_keyword(sql)
    if keyword not in READING_KEYWORDS:
        allowed = ", ".join(sorted(READING_KEYWORDS))
        shown = keyword or "(nothing)"
        raise QueryRejected(f"read-only endpoint: {shown} statements are refused (allowed: {allowed})")
    return keyword


async def run_read_only(
    conn: psycopg.AsyncConnection[Any], sql: str, *, max_rows: int = MAX_ROWS, timeout_ms: int = STATEMENT_TIMEOUT_MS
) -> QueryResult:
    """Run ``sql`` in a READ ONLY transaction that is always rolled back; fetch at most ``max_rows`` rows."""
    keyword = check_reading_statement(sql)
    async with conn.transaction(force_rollback=True):
        await conn.execute("SET TRANSACTION READ ONLY")
        await conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout_ms),))
        if keyword in _CURSOR_KEYWORDS:
            # A server-side cursor: rows stay on the server beyond what we fetch.
            async with conn.cursor(name="sophia_query") as named:
                await named.execute(sql)
                columns = _column_names(named.description)
                fetched = await named.fetchmany(max_rows + 1)
        else:
            async with conn.cursor() as plain:
                await plain.execute(sql, prepare=True)  # prepared: the extended protocol takes exactly one statement
                columns = _column_names(plain.description)
                fetched = await plain.fetchmany(max_rows + 1) if plain.description else []
    rows = [[to_json_value(v) for v in row] for row in fetched[:max_rows]]
    return QueryResult(columns=columns, rows=rows, truncated=len(fetched) > max_rows)


def _column_names(description: list[psycopg.Column] | None) -> list[str]:
    return [column.name for column in description or []]


def add_analytics_routes(
    app: FastAPI, database: Database, auth: Callable[..., Awaitable[None]], *, max_rows: int = MAX_ROWS
) -> None:

    @app.post("/query/neon", tags=["analytics"], dependencies=[Depends(auth)])
    async def query_neon(request: QueryRequest) -> dict[str, Any]:
        """Run one read-only statement and return its columns and (at most ``max_rows``) rows."""
        async with database.connection() as conn:
            try:
                result = await run_read_only(conn, request.query, max_rows=max_rows)
            except psycopg.Error as exc:
                if lost_connection(exc):
                    raise
                raise _rejection(exc, request.query, database) from None
        return {
            "ok": True,
            "columns": result.columns,
            "rows": result.rows,
            "row_count": len(result.rows),
            "truncated": result.truncated,
        }


def _rejection(error: psycopg.Error, sql: str, database: Database) -> QueryRejected:
    message = database.redact(error.diag.message_primary or str(error))
    # A data-modifying WITH is refused by DECLARE CURSOR (feature_not_supported) before READ ONLY could refuse it.
    refused_write = error.sqlstate == _READ_ONLY_VIOLATION or (
        error.sqlstate == _FEATURE_NOT_SUPPORTED and leading_keyword(sql) == "WITH"
    )
    if refused_write:
        return QueryRejected(f"read-only endpoint: write statements are refused ({message})", detail=message)
    return QueryRejected(f"query failed: {message}", detail=message)
