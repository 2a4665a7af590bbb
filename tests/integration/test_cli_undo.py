"""``sophia undo`` refused at the door, through the real CLI against a real run store: exit 2, nothing changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sophia.config import load_config
from sophia.db import MigratorOptions, RunnerOptions, create_migrator
from sophia.engine.clock import SystemClock
from sophia.engine.record import Outcome, Phase, RunRecord
from sophia.store.postgres import PostgresStore
from tests.e2e.conftest import REPO, write_config


def sophia(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sophia.cli", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "200", **env},
    )  # fmt: skip


CONTRACT = "-- sophia:contract\nALTER TABLE accounts DROP COLUMN fax;\n"


async def promote(store: PostgresStore, run_id: str, version: str, at: datetime) -> None:
    record = RunRecord(run_id, version, "local", "local", at - timedelta(minutes=5), actor="ci")
    record.phase, record.outcome, record.finished_at = Phase.PROMOTED, Outcome.PROMOTED, at
    record.artifact = {"kind": "wheel", "reference": "/a/sophia.whl", "version": version, "git_sha": "0" * 40,
                       "content_hash": "0" * 64, "cache_hit": False}  # fmt: skip
    await store.create(record)


async def test_an_undo_across_a_contract_migration_exits_2_naming_it(tmp_path: Path, database_url: str) -> None:
    folder = tmp_path / "sql"
    shutil.copytree(REPO / "ops" / "sql", folder)
    (folder / "003_accounts.sql").write_text("CREATE TABLE accounts (id bigint PRIMARY KEY, fax text);\n")
    (folder / "004_drop_fax.sql").write_text(CONTRACT)
    config = write_config(tmp_path, tmp_path / ".sophia", migrations_dir=str(folder))
    env = {"DATABASE_URL": database_url}
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    async with PostgresStore(database_url) as store:
        await promote(store, "r1", "v1.0.0", an_hour_ago - timedelta(hours=1))
        await promote(store, "r2", "v1.1.0", an_hour_ago)
    settings = load_config(config, env=env)
    options = MigratorOptions(lint=False, backup=False, runner=RunnerOptions(include_contract=True))
    migrated = await create_migrator(settings, clock=SystemClock(), options=options, directory=folder).migrate()
    assert "004_drop_fax" in migrated.applied  # the contract step ran after v1.0.0 was promoted

    refused = sophia(config, "undo", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "cannot undo to v1.0.0: contract migration 004_drop_fax ran after it was promoted" in refused.stderr
    assert "Traceback" not in refused.stderr
    async with PostgresStore(database_url) as store:
        assert [r.run_id for r in await store.list_runs()] == ["r2", "r1"]  # no undo run was even created

    nowhere = sophia(config, "undo", "--to", "v0.9.0", env=env)
    assert nowhere.returncode == 2
    assert "v0.9.0 was never promoted here (earlier releases: v1.0.0)" in nowhere.stderr
