from pathlib import Path

import pytest

from sophia.db.errors import MigrationRefused
from sophia.db.files import checksum, load_migrations, parse_duration


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def test_loads_files_in_version_order_with_their_companions(tmp_path: Path) -> None:
    write(tmp_path, "002_b.sql", "-- sophia:contract\nALTER TABLE a DROP COLUMN x;\n")
    write(tmp_path, "001_a.sql", "CREATE TABLE a (x int);\n")
    write(tmp_path, "001_a.down.sql", "DROP TABLE a;\n")
    write(tmp_path, "001_a.verify.sql", "SELECT to_regclass('a') IS NOT NULL;\n")
    write(
        tmp_path,
        "010_idx.sql",
        "-- sophia:no-transaction\n-- sophia:statement-timeout=5min\nCREATE INDEX CONCURRENTLY i ON a (x);\n",
    )
    write(tmp_path, "README.md", "not a migration")
    migrations = load_migrations(tmp_path)
    assert [m.name for m in migrations] == ["001_a", "002_b", "010_idx"]
    first, second, third = migrations
    assert first.down is not None
    assert first.verify is not None
    assert not first.contract
    assert second.contract
    assert second.down is None
    assert third.up.no_transaction
    assert third.up.statement_timeout_s == 300.0
    assert first.checksum == checksum("CREATE TABLE a (x int);\n")


def test_checksum_ignores_line_ending_style() -> None:
    assert checksum("SELECT 1;\r\nSELECT 2;\r\n") == checksum("SELECT 1;\nSELECT 2;\n")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_a.sql": "SELECT 1;"}, "1_a.sql: migration files are named NNN_name.sql"),
        ({"001_A.sql": "SELECT 1;"}, "001_A.sql: migration files are named"),
        ({"001_a.sql": "SELECT 1;", "001_b.sql": "SELECT 2;"}, "version 001 is already used by 001_a.sql"),
        ({"001_a.down.sql": "SELECT 1;"}, "001_a.down.sql: no matching 001_a.sql"),
        ({"001_a.sql": "-- nothing here\n"}, "001_a.sql: no SQL statements"),
        ({"001_a.sql": "-- sophia:no-transation\nSELECT 1;"}, "unknown marker 'sophia:no-transation'"),
        ({"001_a.sql": "-- sophia:lock-timeout=soon\nSELECT 1;"}, "bad duration 'soon'"),
        ({"001_a.sql": "BEGIN;\nCREATE TABLE t (x int);\nCOMMIT;"}, "001_a.sql line 1: BEGIN manages a transaction"),
        (
            {"001_a.sql": "CREATE TABLE t (x int);\nCREATE INDEX CONCURRENTLY i ON t (x);"},
            "001_a.sql line 2: 'CREATE INDEX CONCURRENTLY i ON t (x)' cannot run inside a transaction",
        ),
        (
            {"001_a.sql": "SELECT 1;", "001_a.down.sql": "-- sophia:contract\nSELECT 1;"},
            "001_a.down.sql: unknown marker 'sophia:contract'",
        ),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_file(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(MigrationRefused, match=None) as caught:
        load_migrations(tmp_path)
    assert message in str(caught.value)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationRefused, match="does not exist"):
        load_migrations(tmp_path / "nope")


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30.0), ("5min", 300.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "0s", "-1s", "5 days"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_the_shipped_migrations_load() -> None:
    migrations = load_migrations(Path(__file__).resolve().parents[2] / "ops" / "sql")
    assert migrations[0].name == "001_audit"
    assert migrations[0].down is not None
    assert migrations[0].verify is not None


def test_a_restore_leaves_out_the_entries_that_make_the_kept_schemas() -> None:
    from sophia.db.backup import prelude, without_schemas

    listing = (
        ";\n; Archive created at 2026-12-02\n"
        "6; 2615 16385 SCHEMA - sophia_engine postgres\n"
        "7; 2615 16389 SCHEMA - sophia_meta postgres\n"
        "8; 2615 16390 SCHEMA - audit postgres\n"
        "9; 0 0 COMMENT - SCHEMA audit postgres\n"
        "10; 0 0 ACL - SCHEMA audit postgres\n"
        "11; 2615 16391 SCHEMA - audit_extra postgres\n"
        "222; 1259 16390 TABLE sophia_meta schema_migrations postgres\n"
    )
    kept = without_schemas(listing, ["sophia_engine", "audit"])
    assert kept == (
        ";\n; Archive created at 2026-12-02\n"
        "7; 2615 16389 SCHEMA - sophia_meta postgres\n"
        "11; 2615 16391 SCHEMA - audit_extra postgres\n"
        "222; 1259 16390 TABLE sophia_meta schema_migrations postgres\n"
    )
    assert "ARRAY['sophia_engine', 'audit']::text[]" in prelude(["sophia_engine", "audit"])
    assert "ARRAY[]::text[]" in prelude()
    with pytest.raises(ValueError, match="not a plain schema name"):
        prelude(["x'; DROP DATABASE neondb; --"])
