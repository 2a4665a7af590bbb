"""Migration files on disk: ``NNN_name.sql`` plus optional ``NNN_name.down.sql`` and ``NNN_name.verify.sql``.

Markers are comment lines anywhere in a file (``-- sophia:KEY`` or ``-- sophia:KEY=VALUE``):

- ``no-transaction``: run statement by statement outside a transaction (CREATE INDEX CONCURRENTLY and friends);
- ``contract``: the contract step of an expand/contract change; destructive statements are allowed, and the file is
  held back until it is asked for explicitly (after full-rollout);
- ``statement-timeout=5min`` / ``lock-timeout=2s``: override the runner's timeouts for this file.

Loading validates everything it can without a database, so bad input is refused before anything is changed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sophia.db.errors import MigrationRefused
from sophia.db.sqltext import Statement, controls_transaction, needs_no_transaction, split_statements

FILE_NAME = re.compile(r"^(?P<version>\d{3,})_(?P<slug>[a-z0-9][a-z0-9_]*)(?P<kind>\.down|\.verify)?\.sql$")
MARKER = re.compile(r"^\s*--\s*sophia:(?P<key>[a-z-]+)(?:\s*=\s*(?P<value>\S+))?\s*$", re.MULTILINE)
_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|min|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
UP_MARKERS = {"no-transaction", "contract", "statement-timeout", "lock-timeout"}
DOWN_MARKERS = {"no-transaction", "statement-timeout", "lock-timeout"}


@dataclass(frozen=True)
class Script:
    """One SQL file's statements and how to run them."""

    path: Path
    statements: tuple[Statement, ...]
    no_transaction: bool = False
    statement_timeout_s: float | None = None
    lock_timeout_s: float | None = None


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # e.g. "001_audit", the file name without ".sql"
    up: Script
    checksum: str  # sha256 of the up file (line endings normalised)
    down: Script | None = None
    verify: Script | None = None
    contract: bool = False

    @property
    def file_name(self) -> str:
        return f"{self.name}.sql"


def parse_duration(text: str) -> float:
    """``500ms``, ``30s``, ``5min`` (or ``5m``), ``1h`` → seconds."""
    match = _DURATION.match(text.strip())
    if not match or float(match["n"]) <= 0:
        raise ValueError(f"bad duration {text!r}: expected e.g. 500ms, 30s, 5min or 1h")
    return float(match["n"]) * _UNIT_SECONDS[match["unit"]]


def checksum(text: str) -> str:
    return hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest()


def _markers(path: Path, text: str, allowed: set[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for match in MARKER.finditer(text):
        key = match["key"]
        if key not in allowed:
            raise MigrationRefused(
                f"{path.name}: unknown marker 'sophia:{key}' (allowed here: {', '.join(sorted(allowed))})"
            )
        found[key] = match["value"]
    return found


def _timeout(path: Path, markers: dict[str, str | None], key: str) -> float | None:
    if key not in markers:
        return None
    value = markers[key]
    if value is None:
        raise MigrationRefused(f"{path.name}: marker 'sophia:{key}' needs a value, e.g. sophia:{key}=30s")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise MigrationRefused(f"{path.name}: {exc}") from None


def load_script(
    path: Path, *, allowed: set[str], check_transaction: bool = True
) -> tuple[Script, dict[str, str | None]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationRefused(f"cannot read {path}: {exc}") from None
    markers = _markers(path, text, allowed)
    statements = tuple(split_statements(text))
    if not statements:
        raise MigrationRefused(f"{path.name}: no SQL statements")
    no_transaction = "no-transaction" in markers
    for statement in statements:
        if controls_transaction(statement):
            raise MigrationRefused(
                f"{path.name} line {statement.line}: {statement.words[0]} manages a transaction; the runner already "
                "runs each file in one (remove it, or mark the file '-- sophia:no-transaction')"
            )
        if check_transaction and not no_transaction and needs_no_transaction(statement):
            raise MigrationRefused(
                f"{path.name} line {statement.line}: {statement.head!r} cannot run inside a transaction; "
                "put it in its own file marked '-- sophia:no-transaction'"
            )
    script = Script(
        path=path,
        statements=statements,
        no_transaction=no_transaction,
        statement_timeout_s=_timeout(path, markers, "statement-timeout"),
        lock_timeout_s=_timeout(path, markers, "lock-timeout"),
    )
    return script, markers


def load_migrations(directory: Path) -> list[Migration]:
    """Every migration in ``directory``, ordered by version; refuses anything ambiguous."""
    if not directory.is_dir():
        raise MigrationRefused(f"migrations directory {directory} does not exist")
    ups: dict[int, Path] = {}
    extras: dict[tuple[int, str], Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql" or not path.is_file():
            continue
        match = FILE_NAME.match(path.name)
        if not match:
            raise MigrationRefused(
                f"{path.name}: migration files are named NNN_name.sql (lower case), "
                "with optional NNN_name.down.sql and NNN_name.verify.sql"
            )
        version = int(match["version"])
        if match["kind"]:
            extras[(version, match["kind"])] = path
        elif version in ups:
            raise MigrationRefused(f"{path.name}: version {version:03d} is already used by {ups[version].name}")
        else:
            ups[version] = path
    migrations = []
    for (version, kind), path in sorted(extras.items()):
        up_path = ups.get(version)
        if up_path is None or up_path.stem != path.name.removesuffix(f"{kind}.sql"):
            raise MigrationRefused(f"{path.name}: no matching {path.name.removesuffix(f'{kind}.sql')}.sql")
    for version, path in sorted(ups.items()):
        up, markers = load_script(path, allowed=UP_MARKERS)
        down_path = extras.get((version, ".down"))
        verify_path = extras.get((version, ".verify"))
        down = load_script(down_path, allowed=DOWN_MARKERS)[0] if down_path else None
        verify = load_script(verify_path, allowed=set(), check_transaction=False)[0] if verify_path else None
        migrations.append(
            Migration(
                version=version,
                name=path.stem,
                up=up,
                checksum=checksum(path.read_text(encoding="utf-8")),
                down=down,
                verify=verify,
                contract="contract" in markers,
            )
        )
    return migrations
