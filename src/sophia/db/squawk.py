"""Canary-safe lint: squawk (the ``squawk-cli`` wheel) on migration files, with our own verdict on its findings.

During a canary, old and new code share one schema, so a migration applied in migrate-neon must keep working for the
old code. Findings are sorted into three kinds:

- **breaking** (drop or rename a column or table, NOT NULL without a default, a column type change, ...): an error,
  unless the file is marked ``-- sophia:contract`` — the contract step of an expand/contract change, which is held
  back until after full-rollout, when no old code is left;
- **locking** (index built without CONCURRENTLY, constraint validated under an exclusive lock, ...): an error in every
  file, contract steps included, because live traffic still runs then; silence one deliberately with squawk's own
  ``-- squawk-ignore RULE`` comment above the statement;
- everything else is a warning.

Transactional files are linted with ``--assume-in-transaction`` (that is how the runner runs them, and it lets squawk
see that an index on a table created in the same file is harmless); ``no-transaction`` files without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sophia.db.errors import MigrationRefused
from sophia.db.files import Migration, load_migrations

BREAKING_RULES = frozenset(
    {
        "ban-drop-column",
        "ban-drop-table",
        "ban-drop-database",
        "ban-truncate-cascade",
        "renaming-column",
        "renaming-table",
        "adding-required-field",
        "adding-not-nullable-field",
        "changing-column-type",
    }
)
LOCKING_RULES = frozenset(
    {
        "require-concurrent-index-creation",
        "require-concurrent-index-deletion",
        "constraint-missing-not-valid",
        "adding-foreign-key-constraint",
        "disallowed-unique-constraint",
        "adding-serial-primary-key-field",
        "adding-primary-key-constraint",
        "adding-field-with-default",
        "ban-concurrent-index-creation-in-transaction",
    }
)
# The runner sets both timeouts for every file itself.
EXCLUDED_RULES = ("require-lock-timeout", "require-statement-timeout")
Severity = Literal["error", "warning"]


class LintUnavailable(MigrationRefused):
    """squawk is not installed or did not run."""


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based
    rule: str
    message: str
    severity: Severity
    help: str | None = None

    def __str__(self) -> str:
        tail = f" ({self.help})" if self.help else ""
        return f"{self.file}:{self.line}: {self.severity}: {self.rule}: {self.message}{tail}"

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "rule": self.rule,
            "message": self.message,
            "severity": self.severity,
            "help": self.help,
        }


def squawk_path() -> str:
    """The squawk binary: next to this Python (a virtualenv's bin/) first, then on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.exists():
        return str(beside)
    found = shutil.which("squawk")
    if found is None:
        raise LintUnavailable("squawk is not installed (pip install squawk-cli)")
    return found


def classify(rule: str, *, contract: bool) -> Severity:
    if rule in LOCKING_RULES:
        return "error"
    if rule in BREAKING_RULES and not contract:
        return "error"
    return "warning"


def _run(squawk: str, paths: list[Path], *, in_transaction: bool, pg_version: str | None) -> list[dict[str, Any]]:
    argv = [squawk, "--reporter", "json", f"--exclude={','.join(EXCLUDED_RULES)}"]
    if in_transaction:
        argv.append("--assume-in-transaction")
    if pg_version:
        argv.append(f"--pg-version={pg_version}")
    argv.extend(str(p) for p in paths)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LintUnavailable(f"squawk did not run: {exc}") from None
    try:
        findings = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        first = detail[0] if detail else "no output"
        raise LintUnavailable(f"squawk failed (exit {proc.returncode}): {first}") from None
    if not isinstance(findings, list):
        raise LintUnavailable("squawk printed something other than a list of findings")
    return findings


def lint(
    migrations: Collection[Migration], *, squawk: str | None = None, pg_version: str | None = None
) -> list[Finding]:
    """Lint the up files of ``migrations``; errors first, then by file and line."""
    if not migrations:
        return []
    binary = squawk or squawk_path()
    by_path = {str(m.up.path): m for m in migrations}
    raw: list[dict[str, Any]] = []
    for in_transaction in (True, False):
        paths = [m.up.path for m in migrations if m.up.no_transaction != in_transaction]
        if paths:
            raw.extend(_run(binary, paths, in_transaction=in_transaction, pg_version=pg_version))
    findings = []
    for item in raw:
        migration = by_path.get(str(item.get("file")))
        rule = str(item.get("rule_name", "unknown"))
        findings.append(
            Finding(
                file=migration.file_name if migration else str(item.get("file")),
                line=int(item.get("line", 0)) + 1,
                rule=rule,
                message=str(item.get("message", "")),
                severity=classify(rule, contract=bool(migration and migration.contract)),
                help=item.get("help") or None,
            )
        )
    return sorted(findings, key=lambda f: (f.severity != "error", f.file, f.line, f.rule))


def lint_migrations(
    directory: Path, *, names: Collection[str] | None = None, pg_version: str | None = None
) -> list[Finding]:
    """Lint the migrations in ``directory`` (only ``names``, e.g. the pending ones, when given).

    For the lint-test stage and for migrate-neon before it applies anything; a finding with ``severity == "error"``
    must fail the stage.
    """
    migrations = load_migrations(directory)
    if names is not None:
        wanted = set(names)
        migrations = [m for m in migrations if m.name in wanted]
    return lint(migrations, pg_version=pg_version)


def errors(findings: Collection[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]
