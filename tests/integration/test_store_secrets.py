"""The database password never reaches an exception, a traceback, a log line or a repr."""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Awaitable, Callable

import psycopg
import pytest

from sophia.platforms.local.postgres import EmbeddedPostgres
from sophia.store import StoreError, StoreUnavailableError
from sophia.store.postgres import PostgresStore
from tests.unit.test_store_records import planned

WRONG = "Wr0ng-Passw0rd-zx81"


def everything_said(exc: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc)), caplog.text])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Call = Callable[[PostgresStore], Awaitable[object]]
CALLS: list[Call] = [
    lambda s: s.list_runs(),
    lambda s: s.load("r1"),
    lambda s: s.create(planned("r1")),
    lambda s: s.acquire("production", "r1", "me", 30),
    lambda s: s.active("production"),
]


@pytest.mark.parametrize("call", CALLS, ids=["list", "load", "create", "acquire", "active"])
async def test_a_wrong_password_is_reported_without_any_password(
    database_url: str, pg_server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture, call: Call
) -> None:
    caplog.set_level(logging.DEBUG)
    store = PostgresStore(database_url.replace(pg_server.password(), WRONG))
    assert WRONG not in repr(store)
    try:
        with pytest.raises(StoreUnavailableError, match="password authentication failed") as caught:
            await call(store)
    finally:
        await store.close()
    said = everything_said(caught.value, caplog)
    assert WRONG not in said
    assert pg_server.password() not in said


async def test_an_unreachable_server_is_reported_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = PostgresStore(f"postgresql://sophia:{WRONG}@127.0.0.1:{closed_port()}/sophia")
    try:
        with pytest.raises(StoreUnavailableError, match="unavailable") as caught:
            await store.list_runs()
    finally:
        await store.close()
    assert WRONG not in everything_said(caught.value, caplog)


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://sophia:{WRONG}@127.0.0.1:5432/sophia?bogus_option=1",
        f"postgresql://sophia:{WRONG}@127.0.0.1:5432/sophia?sslmode=on purpose",
        f"host=127.0.0.1 password={WRONG} dbname",
    ],
)
async def test_a_malformed_dsn_is_reported_without_the_password(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = PostgresStore(dsn)
    assert WRONG not in repr(store)
    try:
        with pytest.raises(StoreError) as caught:
            await store.list_runs()
    finally:
        await store.close()
    assert WRONG not in everything_said(caught.value, caplog)


async def test_losing_the_database_mid_use_is_reported_without_the_password(
    database_url: str, pg_server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = PostgresStore(database_url, wait_s=1.0)
    try:
        await store.create(planned("r1"))
        lease = await store.acquire("production", "r1", "me", 30)
        name = database_url.rsplit("/", 1)[1]
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        failures: list[BaseException] = []
        for call in (store.load("r1"), store.load("r1"), store.renew(lease), store.release(lease)):
            with pytest.raises(StoreUnavailableError) as caught:
                await call
            failures.append(caught.value)
    finally:
        await store.close()
    for failure in failures:
        said = everything_said(failure, caplog)
        assert pg_server.password() not in said
