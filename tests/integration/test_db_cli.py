"""`sophia db ...` as a user runs it: real subprocesses against a real Postgres, asserting exit codes and effects."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sophia.db.lock import LOCK_KEY
from tests.integration.test_db_runner import query, schema_snapshot, three_files, write

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
platform: local
profile: local
services:
  - {name: mcp-research, kind: generic}
profiles:
  local: {}
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "sophia.yaml").write_text(CONFIG)
    return tmp_path


def env_for(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "NEON_API_KEY", "SOPHIA_CONFIG"}}
    env["SOPHIA_CONFIG"] = str(workdir / "sophia.yaml")
    env.update(extra)
    return env


def sophia_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "sophia.cli", *args]


def sophia(workdir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sophia_argv(*args),
        check=False,
        cwd=workdir,
        env=env_for(workdir, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def password_of(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["password"])


def test_migrate_twice_applies_nothing_the_second_time(workdir: Path, database_url: str) -> None:
    first = sophia(workdir, "db", "migrate", "--json", "--dir", str(REPO / "ops" / "sql"), DATABASE_URL=database_url)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["applied"] == ["001_audit", "002_analytics_login"]
    assert report["verified"] == ["001_audit", "002_analytics_login"]
    assert report["backup"].startswith("file:")
    assert Path(workdir, report["backup"].removeprefix("file:")).stat().st_mode & 0o077 == 0
    second = sophia(workdir, "db", "migrate", "--dir", str(REPO / "ops" / "sql"), DATABASE_URL=database_url)
    assert second.returncode == 0, second.stderr
    assert "applied: nothing new; already applied: 2" in second.stdout
    history = sophia(workdir, "db", "history", "--json", "--dir", str(REPO / "ops" / "sql"), DATABASE_URL=database_url)
    assert [row["name"] for row in json.loads(history.stdout)["applied"]] == ["001_audit", "002_analytics_login"]
    verify = sophia(workdir, "db", "verify", "--dir", str(REPO / "ops" / "sql"), DATABASE_URL=database_url)
    assert verify.returncode == 0
    assert "ok   001_audit" in verify.stdout
    for result in (first, second, history, verify):
        assert password_of(database_url) not in result.stdout + result.stderr


def test_an_edited_applied_file_exits_2_naming_it(workdir: Path, database_url: str) -> None:
    folder = workdir / "sql"
    write(folder, "001_a.sql", "CREATE TABLE a (id bigint);\n")
    assert sophia(workdir, "db", "migrate", "--dir", str(folder), "--database-url", database_url).returncode == 0
    write(folder, "001_a.sql", "CREATE TABLE a (id bigint, sneaky text);\n")
    write(folder, "002_b.sql", "CREATE TABLE b (id bigint);\n")
    result = sophia(workdir, "db", "migrate", "--dir", str(folder), "--database-url", database_url)
    assert result.returncode == 2
    assert "001_a.sql was edited after it was applied" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert query(database_url, "SELECT to_regclass('b')") == [(None,)]
    plan = sophia(workdir, "db", "plan", "--json", "--dir", str(folder), "--database-url", database_url)
    assert plan.returncode == 2
    assert json.loads(plan.stdout)["problems"]


def test_two_concurrent_migrations_apply_every_file_exactly_once(workdir: Path, database_url: str) -> None:
    folder = workdir / "sql"
    write(
        folder,
        "001_a.sql",
        "CREATE TABLE a (id bigint);\nCREATE TABLE ran (file text);\n"
        "INSERT INTO ran VALUES ('001');\nSELECT pg_sleep(1);\n",
    )
    write(folder, "002_b.sql", "CREATE TABLE b (id bigint);\nINSERT INTO ran VALUES ('002');\n")
    argv = sophia_argv("db", "migrate", "--json", "--no-backup", "--dir", str(folder))
    env = env_for(workdir, DATABASE_URL=database_url)
    procs = [
        subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    applied = sorted(len(json.loads(out)["applied"]) for out, _ in outputs)
    assert applied == [0, 2]
    assert query(database_url, "SELECT file FROM ran ORDER BY 1") == [("001",), ("002",)]
    assert query(database_url, "SELECT count(*) FROM sophia_meta.schema_migrations") == [(2,)]


def test_a_failing_file_2_of_3_exits_1_with_the_schema_exactly_as_before(workdir: Path, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE app (id bigint PRIMARY KEY)")
        conn.execute("INSERT INTO app VALUES (7)")
    before = schema_snapshot(database_url)
    folder = workdir / "sql"
    three_files(folder, failing="SELECT 1 / 0;")
    result = sophia(workdir, "db", "migrate", "--json", "--dir", str(folder), DATABASE_URL=database_url)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["failed"] == "002_b"
    assert document["reverted"] == ["001_a"]
    assert "002_b.sql line 3: division by zero" in result.stderr
    assert schema_snapshot(database_url) == before
    assert query(database_url, "SELECT id FROM app") == [(7,)]


def test_a_held_lock_exits_2_after_the_bounded_wait(workdir: Path, database_url: str) -> None:
    folder = workdir / "sql"
    write(folder, "001_a.sql", "CREATE TABLE a (id bigint);\n")
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        started = time.monotonic()
        result = sophia(workdir, "db", "migrate", "--lock-wait", "0.5", "--dir", str(folder), DATABASE_URL=database_url)
        waited = time.monotonic() - started
    assert result.returncode == 2
    assert "another migration holds the migration lock" in result.stderr
    assert "nothing was changed" in result.stderr
    assert waited < 30
    assert query(database_url, "SELECT to_regclass('a')") == [(None,)]


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("badname", ["db", "migrate"], "migration files are named NNN_name.sql"),
        ("nodir", ["db", "migrate"], "does not exist"),
        ("ok", ["db", "migrate", "--lock-wait", "-1"], "Invalid value"),
        ("ok", ["db", "restore", "--yes"], "exactly one of --file PATH or --branch NAME"),
        ("unsafe", ["db", "migrate"], "canary-unsafe migration: 001_drop.sql:1: error: ban-drop-table"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    workdir: Path, database_url: str, setup: str, args: list[str], message: str
) -> None:
    folder = workdir / "sql"
    if setup == "badname":
        write(folder, "1-create.sql", "SELECT 1;")
    elif setup == "unsafe":
        write(folder, "001_drop.sql", "DROP TABLE IF EXISTS legacy;\n")
    elif setup == "ok":
        write(folder, "001_a.sql", "CREATE TABLE a (id bigint);\n")
    before = schema_snapshot(database_url)
    result = (
        sophia(workdir, *args, "--dir", str(folder), DATABASE_URL=database_url)
        if args[1] != "restore"
        else sophia(workdir, *args, DATABASE_URL=database_url)
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert schema_snapshot(database_url) == before


def test_no_database_configured_exits_2(workdir: Path) -> None:
    write(workdir / "sql", "001_a.sql", "SELECT 1;\n")
    result = sophia(workdir, "db", "plan", "--dir", str(workdir / "sql"))
    assert result.returncode == 2
    assert "no database configured" in result.stderr


def test_a_bad_config_exits_2(workdir: Path) -> None:
    (workdir / "sophia.yaml").write_text("services: []\n")
    result = sophia(workdir, "db", "plan", DATABASE_URL="postgresql://x@127.0.0.1:1/db")
    assert result.returncode == 2
    assert "services" in result.stderr


def test_a_wrong_password_never_shows_up(workdir: Path, database_url: str) -> None:
    wrong = database_url.replace(password_of(database_url), "Wr0ngButSecret")
    result = sophia(workdir, "db", "migrate", "--json", "--dir", str(REPO / "ops" / "sql"), "--database-url", wrong)
    assert result.returncode == 2
    assert "password authentication failed" in result.stderr
    assert "Wr0ngButSecret" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["exit_code"] == 2


def test_lint_reports_canary_unsafe_files(workdir: Path) -> None:
    folder = workdir / "sql"
    write(folder, "001_rename.sql", "ALTER TABLE accounts RENAME COLUMN email TO mail;\n")
    result = sophia(workdir, "db", "lint", "--json", "--dir", str(folder))
    assert result.returncode == 1
    findings = json.loads(result.stdout)["findings"]
    assert any(f["rule"] == "renaming-column" and f["severity"] == "error" for f in findings)
    clean = sophia(workdir, "db", "lint", "--dir", str(REPO / "ops" / "sql"))
    assert clean.returncode == 0, clean.stdout


def test_restore_from_the_pre_migration_dump(workdir: Path, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE app (id bigint PRIMARY KEY, name text)")
        conn.execute("INSERT INTO app VALUES (1, 'kept')")
    folder = workdir / "sql"
    write(folder, "001_a.sql", "CREATE TABLE a (id bigint);\nALTER TABLE app ADD COLUMN extra text;\n")
    migrated = sophia(workdir, "db", "migrate", "--json", "--dir", str(folder), DATABASE_URL=database_url)
    assert migrated.returncode == 0, migrated.stderr
    dump = Path(workdir, json.loads(migrated.stdout)["backup"].removeprefix("file:"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO app VALUES (2, 'written after the migration')")
    unconfirmed = sophia(workdir, "db", "restore", "--file", str(dump), DATABASE_URL=database_url)
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr
    restored = sophia(workdir, "db", "restore", "--file", str(dump), "--yes", DATABASE_URL=database_url)
    assert restored.returncode == 0, restored.stderr
    assert query(database_url, "SELECT to_regclass('a')") == [(None,)]
    assert query(database_url, "SELECT * FROM app") == [(1, "kept")]
    plan: dict[str, Any] = json.loads(
        sophia(workdir, "db", "plan", "--json", "--dir", str(folder), DATABASE_URL=database_url).stdout
    )
    assert [m["name"] for m in plan["pending"]] == ["001_a"]
