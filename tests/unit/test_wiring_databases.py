"""Which database the services, the migrations, the synthetic checks and the run store use (``wiring``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sophia import wiring
from sophia.config import ConfigError, load_config
from sophia.engine.clock import FakeClock
from sophia.platforms.memory import MemoryPlatform

REPO = Path(__file__).resolve().parents[2]
EMBEDDED = "postgresql://sophia:pw@127.0.0.1:55432/neondb"
OTHER = "postgresql://app:pw@127.0.0.1:6543/app"
REMOTE = "postgresql://app:pw@db.example.com/app"


def parts(running: str | None, own: str | None = EMBEDDED) -> wiring.PlatformParts:
    return wiring.PlatformParts(
        MemoryPlatform({}), database_url=lambda: running, own_database_url=(lambda: own) if own else None
    )


@pytest.mark.parametrize(
    ("env", "running", "own", "expected"),
    [
        ({}, EMBEDDED, EMBEDDED, EMBEDDED),  # the local platform on its embedded Postgres
        ({}, None, EMBEDDED, EMBEDDED),  # not running: its own database still names the run store's home
        ({"DATABASE_URL": OTHER}, None, EMBEDDED, OTHER),  # not running: the configuration's
        ({"DATABASE_URL": OTHER}, OTHER, EMBEDDED, OTHER),  # started on it, and still configured so
        ({"DATABASE_URL": OTHER}, None, None, OTHER),  # a platform without a database of its own
        ({"DATABASE_URL": REMOTE + "?sslmode=require"}, None, None, REMOTE + "?sslmode=require"),
    ],
)
async def test_the_services_database(env: dict[str, str], running: str | None, own: str | None, expected: str) -> None:
    settings = load_config(REPO / "sophia.yaml", env=env)
    assert await wiring.database_url(settings, parts(running, own), FakeClock()) == expected


@pytest.mark.parametrize(
    ("env", "running", "own", "message"),
    [
        ({"DATABASE_URL": OTHER}, EMBEDDED, EMBEDDED, "use another database than DATABASE_URL"),
        ({}, None, None, "DATABASE_URL or NEON_API_KEY is required"),
        ({"DATABASE_URL": REMOTE}, None, None, "must use TLS"),
    ],
)
async def test_a_services_database_that_cannot_be_used_is_refused(
    env: dict[str, str], running: str | None, own: str | None, message: str
) -> None:
    settings = load_config(REPO / "sophia.yaml", env=env)
    with pytest.raises(ConfigError, match=message) as refused:
        await wiring.database_url(settings, parts(running, own), FakeClock())
    assert ":pw@" not in str(refused.value)


@pytest.mark.parametrize(
    ("env", "own", "expected"),
    [
        ({}, EMBEDDED, OTHER),  # with the services' database
        ({"SOPHIA_STATE_URL": EMBEDDED}, EMBEDDED, EMBEDDED),
        ({"NEON_API_KEY": "napi_x"}, EMBEDDED, EMBEDDED),  # never in a database a backup branch restore rewinds
        ({"NEON_API_KEY": "napi_x", "DATABASE_URL": OTHER}, EMBEDDED, OTHER),  # a URL, not the Neon API: pg_dump
    ],
)
def test_the_run_store(env: dict[str, str], own: str | None, expected: str) -> None:
    settings = load_config(REPO / "sophia.yaml", env=env)
    assert wiring.state_database_url(settings, parts(None, own), OTHER) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEON_API_KEY": "napi_x"}, "SOPHIA_STATE_URL is required with NEON_API_KEY"),
        ({"SOPHIA_STATE_URL": REMOTE}, "SOPHIA_STATE_URL: the connection to db.example.com must use TLS"),
    ],
)
def test_a_run_store_that_cannot_be_used_is_refused(env: dict[str, str], message: str) -> None:
    settings = load_config(REPO / "sophia.yaml", env=env)
    with pytest.raises(ConfigError, match=message):
        wiring.state_database_url(settings, parts(None, own=None), OTHER)
