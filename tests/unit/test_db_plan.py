from datetime import UTC, datetime
from pathlib import Path

import pytest

from sophia.db.files import Migration, Script
from sophia.db.history import Applied
from sophia.db.plan import make_plan
from sophia.db.sqltext import split_statements

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def migration(version: int, name: str, *, checksum: str | None = None, contract: bool = False) -> Migration:
    script = Script(Path(f"{version:03d}_{name}.sql"), tuple(split_statements("SELECT 1")))
    return Migration(version, f"{version:03d}_{name}", script, checksum or f"sum-{version}", contract=contract)


def applied(version: int, name: str, checksum: str | None = None) -> Applied:
    return Applied(version, f"{version:03d}_{name}", checksum or f"sum-{version}", T0, "me", 5)


FILES = [migration(1, "a"), migration(2, "b"), migration(3, "c")]


@pytest.mark.parametrize(
    ("history", "pending", "problems"),
    [
        ([], ["001_a", "002_b", "003_c"], []),
        ([applied(1, "a")], ["002_b", "003_c"], []),
        ([applied(1, "a"), applied(2, "b"), applied(3, "c")], [], []),
        ([applied(1, "a", "edited")], ["002_b", "003_c"], ["001_a.sql was edited after it was applied"]),
        ([applied(1, "a"), applied(2, "renamed")], ["003_c"], ["002_b.sql: version 002 was applied as 002_renamed"]),
        ([applied(1, "a"), applied(3, "c")], ["002_b"], ["002_b.sql is numbered before 003_c"]),
    ],
)
def test_plan(history: list[Applied], pending: list[str], problems: list[str]) -> None:
    plan = make_plan(FILES, history, include_contract=False)
    assert [m.name for m in plan.pending] == pending
    assert len(plan.problems) == len(problems)
    for problem, expected in zip(plan.problems, problems, strict=True):
        assert problem.startswith(expected)


def test_contract_steps_and_everything_after_them_are_held_back_until_asked_for() -> None:
    files = [migration(1, "expand"), migration(2, "contract", contract=True), migration(3, "next")]
    plan = make_plan(files, [], include_contract=False)
    assert [m.name for m in plan.pending] == ["001_expand"]
    assert [m.name for m in plan.held] == ["002_contract", "003_next"]
    later = make_plan(files, [applied(1, "expand")], include_contract=True)
    assert [m.name for m in later.pending] == ["002_contract", "003_next"]
    assert later.held == ()


def test_applied_migrations_missing_on_disk_are_reported_not_refused() -> None:
    plan = make_plan(FILES[:2], [applied(1, "a"), applied(2, "b"), applied(3, "c")], include_contract=False)
    assert [a.name for a in plan.unknown] == ["003_c"]
    assert plan.problems == ()
    assert plan.pending == ()
