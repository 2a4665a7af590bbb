"""The Neon branch flow against a fake Neon API whose branches are real databases, reached through the TLS proxy:
rehearse on a branch, back up to a branch, migrate the default branch, restore it from the backup branch."""

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sophia.db.errors import MigrationFailed
from sophia.db.migrator import MigratorOptions, NeonSource, SqlMigrator
from sophia.db.neon_api import NeonApi, NeonApiError
from sophia.engine.clock import FakeClock
from sophia.platforms.local.postgres import EmbeddedPostgres
from tests.fakes.neon_api import FakeNeonApi, neon_project
from tests.integration.test_db_cli import sophia, write

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def neon(pg_server: EmbeddedPostgres, tmp_path: Path) -> Iterator[FakeNeonApi]:
    with neon_project(pg_server.dsn(), pg_server.port, tmp_path) as api:
        yield api


def migrator(neon: FakeNeonApi, folder: Path, *, api_key: str | None = None) -> SqlMigrator:
    clock = FakeClock()
    api = NeonApi(base_url=neon.url, api_key=api_key or neon.api_key, project_id=neon.project_id, clock=clock)
    source = NeonSource(api, database="neondb", role="neondb_owner", endpoint_id=neon.main_endpoint)
    return SqlMigrator(source, folder, clock, MigratorOptions())


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
            "'information_schema')"
        ).fetchall()
    return {r[0] for r in rows}


async def test_migrate_rehearses_on_a_branch_backs_up_to_a_branch_then_applies(neon: FakeNeonApi) -> None:
    report = await migrator(neon, REPO / "ops" / "sql").migrate_report()
    assert report.applied == ("001_audit", "002_analytics_login")
    assert report.verified == ("001_audit", "002_analytics_login")
    assert report.rehearsed_on is not None
    assert report.rehearsed_on.startswith("sophia-rehearsal-")
    assert report.backup is not None
    assert report.backup.startswith("neon-branch:sophia-backup-")
    names = {b.name for b in neon.branches.values()}
    assert names == {"main", report.backup.removeprefix("neon-branch:")}  # the rehearsal branch is gone
    assert ("DELETE", f"/projects/{neon.project_id}/branches/") in {(m, p[: p.rfind("/") + 1]) for m, p in neon.calls}
    assert "audit.events" in tables(neon.dsn(neon.main))
    assert "audit.events" not in tables(neon.dsn(neon.branch_named(report.backup.removeprefix("neon-branch:"))))
    with psycopg.connect(neon.dsn(neon.main)) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'events'").fetchone()
    assert owner == ("neondb_owner",)  # applied as the Neon role, not a superuser
    proxy = neon.proxy
    assert proxy is not None
    assert all(s.outcome == "routed" and s.sni and "-pooler" not in s.sni for s in proxy.log)
    assert len({s.endpoint for s in proxy.log}) == 2  # the default branch's endpoint and the rehearsal's


async def test_nothing_pending_means_no_branch_work(neon: FakeNeonApi) -> None:
    await migrator(neon, REPO / "ops" / "sql").migrate_report()
    posts = sum(1 for method, _ in neon.calls if method == "POST")
    again = await migrator(neon, REPO / "ops" / "sql").migrate_report()
    assert again.applied == ()
    assert again.already_applied == 2
    assert again.backup is None
    assert sum(1 for method, _ in neon.calls if method == "POST") == posts


async def test_a_failing_rehearsal_never_touches_the_default_branch(neon: FakeNeonApi, tmp_path: Path) -> None:
    write(tmp_path, "001_a.sql", "CREATE TABLE a (id bigint);\n")
    write(tmp_path, "002_b.sql", "CREATE TABLE b (id bigint);\nINSERT INTO missing VALUES (1);\n")
    expected = r"rehearsal on Neon branch sophia-rehearsal-\S+ failed: 002_b\.sql line 2"
    with pytest.raises(MigrationFailed, match=expected):
        await migrator(neon, tmp_path).migrate_report()
    assert [b.name for b in neon.branches.values()] == ["main"]  # rehearsal deleted, no backup taken
    assert tables(neon.dsn(neon.main)) == set()


async def test_restore_the_default_branch_from_the_backup_branch(neon: FakeNeonApi) -> None:
    folder = REPO / "ops" / "sql"
    report = await migrator(neon, folder).migrate_report()
    assert report.backup is not None
    backup = report.backup.removeprefix("neon-branch:")
    done = await migrator(neon, folder).restore(branch=backup)
    assert done.startswith(f"restored branch main from {backup}; its previous state is kept as main-before-restore-")
    assert "audit.events" not in tables(neon.dsn(neon.main))
    preserved = next(b for b in neon.branches.values() if b.name.startswith("main-before-restore-"))
    assert "audit.events" in tables(neon.dsn(preserved))
    plan = await migrator(neon, folder).plan()  # the default branch answers again after its restart
    assert [m.name for m in plan.pending] == ["001_audit", "002_analytics_login"]


async def test_a_pooled_uri_from_the_api_is_used_as_the_direct_endpoint(neon: FakeNeonApi) -> None:
    neon.force_pooler = True
    assert (await migrator(neon, REPO / "ops" / "sql").migrate_report()).applied == ("001_audit", "002_analytics_login")
    assert neon.proxy is not None
    assert not any("-pooler" in (s.endpoint or "") for s in neon.proxy.log)


async def test_a_wrong_api_key_is_refused_without_showing_it(neon: FakeNeonApi) -> None:
    with pytest.raises(NeonApiError, match="HTTP 401: authentication required") as caught:
        await migrator(neon, REPO / "ops" / "sql", api_key="napi_wrong_secret_key").migrate_report()
    assert "napi_wrong_secret_key" not in str(caught.value)


def neon_config(neon: FakeNeonApi) -> str:
    return f"""\
platform: local
profile: local
services:
  - {{name: mcp-research, kind: generic}}
profiles:
  local: {{}}
neon:
  project_id: {neon.project_id}
  endpoint_id: {neon.main_endpoint}
  user: neondb_owner
  database: neondb
  api_url: {neon.url}
"""


def test_the_cli_migrates_and_restores_through_the_neon_api(neon: FakeNeonApi, tmp_path: Path) -> None:
    (tmp_path / "sophia.yaml").write_text(neon_config(neon))
    folder = str(REPO / "ops" / "sql")
    migrated = sophia(tmp_path, "db", "migrate", "--json", "--dir", folder, NEON_API_KEY=neon.api_key)
    assert migrated.returncode == 0, migrated.stderr
    report = json.loads(migrated.stdout)
    assert report["applied"] == ["001_audit", "002_analytics_login"]
    assert report["rehearsed_on"]
    backup = report["backup"].removeprefix("neon-branch:")
    restored = sophia(tmp_path, "db", "restore", "--branch", backup, "--yes", NEON_API_KEY=neon.api_key)
    assert restored.returncode == 0, restored.stderr
    assert "audit.events" not in tables(neon.dsn(neon.main))
    wrong = sophia(tmp_path, "db", "plan", "--dir", folder, NEON_API_KEY="napi_not_the_key")
    assert wrong.returncode == 2
    assert "401" in wrong.stderr
    for result in (migrated, restored, wrong):
        assert neon.api_key not in result.stdout + result.stderr
        assert neon.password not in result.stdout + result.stderr
        assert "napi_not_the_key" not in result.stdout + result.stderr


def test_the_cli_as_an_old_client_falls_back_to_the_endpoint_option(neon: FakeNeonApi, tmp_path: Path) -> None:
    (tmp_path / "sophia.yaml").write_text(neon_config(neon))
    assert neon.proxy is not None
    url = neon.uri(neon.main, pooled=False) + "&sslsni=0"
    # --no-backup: the wheel's pg_dump has no TLS (a URL, unlike the Neon API, gets a pg_dump file, not a branch)
    result = sophia(tmp_path, "db", "migrate", "--no-backup", "--dir", str(REPO / "ops" / "sql"), DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    outcomes = [s.outcome for s in neon.proxy.log]
    assert outcomes[0].startswith("Endpoint ID is not specified")
    assert all(s.option_endpoint == neon.main_endpoint for s in neon.proxy.log[1:])
    assert "audit.events" in tables(neon.dsn(neon.main))
