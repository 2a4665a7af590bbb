"""Deciding what to apply: a pure function of the files on disk and the history in the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sophia.db.files import Migration
from sophia.db.history import Applied


@dataclass(frozen=True)
class Plan:
    pending: tuple[Migration, ...]  # to apply now, in order
    held: tuple[Migration, ...]  # pending, but held back: a contract step and everything after it
    applied: tuple[Applied, ...]
    unknown: tuple[Applied, ...]  # applied in the database, no file on disk (an older checkout)
    problems: tuple[str, ...]  # reasons to refuse the whole run

    def as_json(self) -> dict[str, Any]:
        return {
            "pending": [_describe(m) for m in self.pending],
            "held": [_describe(m) for m in self.held],
            "applied": [a.name for a in self.applied],
            "unknown": [a.name for a in self.unknown],
            "problems": list(self.problems),
        }


def _describe(migration: Migration) -> dict[str, Any]:
    return {
        "name": migration.name,
        "no_transaction": migration.up.no_transaction,
        "contract": migration.contract,
        "down": migration.down is not None,
        "verify": migration.verify is not None,
    }


def make_plan(migrations: Sequence[Migration], applied: Sequence[Applied], *, include_contract: bool) -> Plan:
    by_version = {a.version: a for a in applied}
    on_disk = {m.version for m in migrations}
    problems: list[str] = []
    waiting: list[Migration] = []
    newest = max(by_version, default=0)
    for migration in migrations:
        record = by_version.get(migration.version)
        if record is None:
            waiting.append(migration)
            if migration.version < newest:
                problems.append(
                    f"{migration.file_name} is numbered before {by_version[newest].name}, which is already applied; "
                    f"renumber it after {newest:03d}"
                )
        elif record.name != migration.name:
            problems.append(
                f"{migration.file_name}: version {migration.version:03d} was applied as {record.name}.sql; "
                "applied files must not be renamed"
            )
        elif record.checksum != migration.checksum:
            problems.append(
                f"{migration.file_name} was edited after it was applied (checksum {record.checksum[:12]} in the "
                f"database, {migration.checksum[:12]} on disk); restore it and put the change in a new file"
            )
    pending: list[Migration] = []
    held: list[Migration] = []
    for migration in waiting:
        if held or (migration.contract and not include_contract):
            held.append(migration)
        else:
            pending.append(migration)
    unknown = tuple(a for a in applied if a.version not in on_disk)
    return Plan(tuple(pending), tuple(held), tuple(applied), unknown, tuple(problems))
