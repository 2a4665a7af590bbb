from pathlib import Path

import pytest

from sophia.db.squawk import classify, errors, lint_migrations


@pytest.mark.parametrize(
    ("rule", "contract", "severity"),
    [
        ("ban-drop-column", False, "error"),
        ("ban-drop-column", True, "warning"),
        ("renaming-table", False, "error"),
        ("adding-required-field", True, "warning"),
        ("require-concurrent-index-creation", False, "error"),
        ("require-concurrent-index-creation", True, "error"),
        ("prefer-robust-stmts", False, "warning"),
    ],
)
def test_classify(rule: str, contract: bool, severity: str) -> None:
    assert classify(rule, contract=contract) == severity


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def test_destructive_statements_fail_unless_marked_as_a_contract_step(tmp_path: Path) -> None:
    write(tmp_path, "001_expand.sql", "ALTER TABLE accounts ADD COLUMN email_new text;\n")
    write(tmp_path, "002_drop.sql", "ALTER TABLE accounts DROP COLUMN email;\n")
    write(tmp_path, "003_contract.sql", "-- sophia:contract\nALTER TABLE accounts DROP COLUMN email_old;\n")
    write(tmp_path, "004_required.sql", "ALTER TABLE accounts ADD COLUMN tier text NOT NULL;\n")
    findings = lint_migrations(tmp_path)
    assert {(f.file, f.rule) for f in errors(findings)} == {
        ("002_drop.sql", "ban-drop-column"),
        ("004_required.sql", "adding-required-field"),
    }
    contract = [f for f in findings if f.file == "003_contract.sql" and f.rule == "ban-drop-column"]
    assert contract
    assert contract[0].severity == "warning"
    assert all(f.line >= 1 for f in findings)


def test_locking_statements_fail_even_in_contract_steps_but_not_on_new_tables(tmp_path: Path) -> None:
    write(tmp_path, "001_new.sql", "CREATE TABLE t (id bigint PRIMARY KEY, x text);\nCREATE INDEX t_x ON t (x);\n")
    write(tmp_path, "002_old.sql", "-- sophia:contract\nCREATE INDEX accounts_email ON accounts (email);\n")
    concurrent = "-- sophia:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS a_e ON accounts (e);\n"
    write(tmp_path, "003_ok.sql", concurrent)
    found = {(f.file, f.rule) for f in errors(lint_migrations(tmp_path))}
    assert found == {("002_old.sql", "require-concurrent-index-creation")}


def test_only_named_files_are_linted(tmp_path: Path) -> None:
    write(tmp_path, "001_drop.sql", "DROP TABLE old_stuff;\n")
    write(tmp_path, "002_add.sql", "ALTER TABLE t ADD COLUMN c text;\n")
    assert errors(lint_migrations(tmp_path, names=["002_add"])) == []


def test_the_shipped_migrations_are_canary_safe() -> None:
    assert errors(lint_migrations(Path(__file__).resolve().parents[2] / "ops" / "sql")) == []
