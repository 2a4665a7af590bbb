"""The local platform on a Neon project (a fake Neon API whose branches are real databases, reached over TLS through
an SNI-routing proxy), driven by the real CLI with ``NEON_API_KEY``: the services, the migrations and the synthetic
checks all use the project's default branch; the run store stays in the platform's embedded Postgres."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sophia.platforms.local.postgres import EmbeddedPostgres
from tests.conftest import free_port
from tests.e2e.conftest import REPO, Cli, _logs_tail, tolerant_local_profiles, write_config
from tests.fakes.neon_api import FakeNeonApi, neon_project

pytestmark = pytest.mark.slow


@dataclass
class NeonWorld:
    cli: Cli
    neon: FakeNeonApi
    migrations: Path


def rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def tables(dsn: str) -> set[str]:
    found = rows(dsn, "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT LIKE 'pg_%' "
                      "AND schemaname <> 'information_schema'")  # fmt: skip
    return {str(r[0]) for r in found}


@pytest.fixture(scope="module")
def world() -> Iterator[NeonWorld]:
    # Outside pytest's temporary tree: the embedded Postgres servers run as another user when we are root.
    home = Path(tempfile.mkdtemp(prefix="sophia-e2e-neon-"))
    server = EmbeddedPostgres(home / "neon-pg", port=free_port())  # the "Neon" servers, apart from the platform's
    server.start()
    migrations = home / "sql"
    shutil.copytree(REPO / "ops" / "sql", migrations)
    try:
        with neon_project(server.dsn(), server.port, home) as neon:
            state_dir = home / ".sophia"
            state_dir.mkdir()
            neon_config = {"project_id": neon.project_id, "endpoint_id": neon.main_endpoint,
                           "user": "neondb_owner", "database": "neondb", "api_url": neon.url}  # fmt: skip
            config = write_config(home, state_dir, "local", neon=neon_config, migrations_dir=str(migrations),
                                  profiles=tolerant_local_profiles())  # fmt: skip
            cli = Cli(config, state_dir, env={"NEON_API_KEY": neon.api_key})
            up = cli("local", "up", timeout=600)
            assert up.returncode == 0, up.stdout + up.stderr + _logs_tail(state_dir)
            try:
                yield NeonWorld(cli, neon, migrations)
            finally:
                cli.down()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_a_deploy_rehearses_on_a_branch_backs_up_migrates_and_checks_the_same_database(world: NeonWorld) -> None:
    cli, neon = world.cli, world.neon
    result = cli("deploy", "--version", "v1.1.0", "--skip", "lint-test")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    report = cli.report()
    migrate = next(s for s in report["stages"] if s["name"] == "migrate-neon")
    assert migrate["data"]["applied"] == ["001_audit", "002_analytics_login"]
    assert migrate["data"]["rehearsed_on"]
    backup = str(migrate["data"]["backup"])
    assert backup.startswith("neon-branch:")
    assert neon.branch_named(backup.removeprefix("neon-branch:"))  # the backup branch exists in the project
    main = neon.dsn(neon.main)
    assert {"audit.events", "sandbox.outbox"} <= tables(main)
    # The synthetic checks found their side effects where the new version wrote them: the default branch.
    written = rows(main, "SELECT kind, version FROM sandbox.outbox WHERE version = 'v1.1.0'")
    assert {"slack_message", "crm_task"} <= {kind for kind, _ in written}
    synthetics = next(s for s in report["stages"] if s["name"] == "synthetics")
    assert synthetics["status"] == "passed"
    # The run store is the platform's embedded Postgres, not the Neon database a backup branch could rewind.
    assert rows(cli.database_url(), f"SELECT outcome FROM sophia_engine.runs WHERE run_id = '{report['run_id']}'")
    assert "sophia_engine.runs" not in tables(main)
    assert neon.api_key not in output
    assert neon.password not in output


def test_a_run_failing_in_synthetics_takes_its_migration_back_with_the_down_file(world: NeonWorld) -> None:
    cli, neon = world.cli, world.neon
    up, down = world.migrations / "003_gadgets.sql", world.migrations / "003_gadgets.down.sql"
    up.write_text("CREATE TABLE public.gadgets (id bigint PRIMARY KEY);\n")
    down.write_text("DROP TABLE public.gadgets;\n")
    try:
        result = cli("deploy", "--version", "v1.2.0", "--skip", "lint-test", "--fault", "stage:synthetics=fail")
        assert result.returncode == 1, result.stdout + result.stderr
        report = cli.report()
        assert report["outcome"] == "rolled_back"
        assert next(s for s in report["stages"] if s["name"] == "migrate-neon")["data"]["applied"] == ["003_gadgets"]
        database = report["rollback"]["database"]
        assert (database["method"], database["error"]) == ("down_files", None)
        main = neon.dsn(neon.main)
        assert "public.gadgets" not in tables(main)
        assert rows(main, "SELECT count(*) FROM sophia_meta.schema_migrations WHERE version = 3") == [(0,)]
        markdown = (cli.state_dir / "runs" / "latest" / "report.md").read_text()
        assert "003_gadgets taken back by down files" in markdown
        assert {(s["stable_version"], s["canary_version"]) for s in cli.status()} == {("v1.1.0", None)}
    finally:
        up.unlink()
        down.unlink()


def test_a_migration_without_a_down_file_is_restored_from_the_backup_branch(world: NeonWorld) -> None:
    cli, neon = world.cli, world.neon
    (world.migrations / "003_widgets.sql").write_text("CREATE TABLE public.widgets (id bigint PRIMARY KEY);\n")
    result = cli("deploy", "--version", "v1.2.0", "--skip", "lint-test", "--fault", "stage:synthetics=fail")
    assert result.returncode == 1, result.stdout + result.stderr
    report = cli.report()
    assert report["outcome"] == "rolled_back"
    database = report["rollback"]["database"]
    assert database["method"] == "restore_backup"
    assert database["error"] is None
    assert "public.widgets" not in tables(neon.dsn(neon.main))
    assert {"audit.events", "sandbox.outbox"} <= tables(neon.dsn(neon.main))  # the earlier release's schema stays
    assert {(s["stable_version"], s["canary_version"]) for s in cli.status()} == {("v1.1.0", None)}
