"""The audit trail created by ``ops/sql/001_audit.sql``: append events, and check the hash chain for tampering.

The database computes each row's hash in a trigger; :func:`event_hash` is an independent Python implementation of the
same format, so a tampered database function cannot vouch for itself. ``001_audit.verify.sql`` pins both to one
known value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.types.json import Jsonb

AUDIT_SCHEMA = "audit"  # created by ops/sql/001_audit.sql

GENESIS_HASH = "0" * 64
RESULTS = ("success", "failure", "denied", "error")
EXPECTED_TRIGGERS = {
    "events_chain",
    "events_append_only",
    "events_no_truncate",
    "chain_head_guard",
    "chain_head_no_truncate",
}
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential|dsn|authorization", re.IGNORECASE)
_INSERT = (
    "INSERT INTO audit.events (actor, action, target, payload, result, request_id) "
    "VALUES (%s, %s, %s, %s, %s, %s) RETURNING seq, occurred_at, hash"
)
_ROWS = (
    "SELECT seq, occurred_at, actor, action, target, payload::text, result, request_id, prev_hash, hash "
    "FROM audit.events ORDER BY seq"
)


class AuditSchemaMissing(RuntimeError):
    """The database has no audit schema (001_audit.sql was not applied)."""


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    occurred_at: datetime
    hash: str


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    problems: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "problems": list(self.problems),
        }


def _field(value: str | None) -> str:
    return "~" if value is None else f"{len(value)}:{value}"


def event_hash(
    *,
    prev_hash: str,
    seq: int,
    occurred_at: datetime,
    actor: str,
    action: str,
    target: str,
    payload_text: str,
    result: str,
    request_id: str | None,
) -> str:
    """SHA-256 over the previous hash and the row's fields; ``payload_text`` is Postgres' own ``payload::text``."""
    stamp = occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    material = "\n".join(
        [
            prev_hash,
            str(seq),
            stamp,
            *(_field(v) for v in (actor, action, target, payload_text, result)),
            _field(request_id),
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()


def redact_payload(value: Any) -> Any:
    """Secrets never enter the audit trail: values under secret-looking keys become ``***``."""
    if isinstance(value, Mapping):
        return {str(k): "***" if _SECRET_KEY.search(str(k)) else redact_payload(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_payload(v) for v in value]
    return value


def _params(
    *, actor: str, action: str, target: str, payload: Mapping[str, Any], result: str, request_id: str | None
) -> tuple[Any, ...]:
    if result not in RESULTS:
        raise ValueError(f"audit result must be one of {', '.join(RESULTS)}, not {result!r}")
    return (actor, action, target, Jsonb(redact_payload(payload)), result, request_id)


async def append_audit_event(  # noqa: PLR0917 - the helper's signature is fixed by issue 5
    conn: AsyncConnection[Any],
    actor: str,
    action: str,
    target: str,
    payload: Mapping[str, Any],
    result: str,
    request_id: str | None = None,
) -> AuditEvent:
    """Append one event (in the caller's transaction, if any: keep it short, appends are serialised)."""
    params = _params(actor=actor, action=action, target=target, payload=payload, result=result, request_id=request_id)
    cur = await conn.execute(_INSERT, params)
    row = await cur.fetchone()
    assert row is not None
    return AuditEvent(row[0], row[1], row[2])


def append_audit_event_sync(  # noqa: PLR0917 - mirrors append_audit_event
    conn: Connection[Any],
    actor: str,
    action: str,
    target: str,
    payload: Mapping[str, Any],
    result: str,
    request_id: str | None = None,
) -> AuditEvent:
    """:func:`append_audit_event` for synchronous callers."""
    params = _params(actor=actor, action=action, target=target, payload=payload, result=result, request_id=request_id)
    row = conn.execute(_INSERT, params).fetchone()
    assert row is not None
    return AuditEvent(row[0], row[1], row[2])


class _Chain:
    """Walks the rows in sequence order and collects what does not add up."""

    def __init__(self, max_problems: int) -> None:
        self.rows = 0
        self.last_seq = 0
        self.last_hash = GENESIS_HASH
        self.problems: list[str] = []
        self.hashes: dict[int, str] = {}
        self._max = max_problems
        self._dropped = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < self._max:
            self.problems.append(text)
        else:
            self._dropped += 1

    def add(self, row: tuple[Any, ...], anchor_seq: int | None) -> None:
        seq, occurred_at, actor, action, target, payload_text, result, request_id, prev_hash, stored = row
        self.rows += 1
        if seq != self.last_seq + 1:
            self.problem(
                f"rows {self.last_seq + 1}..{seq - 1} are missing (deleted?)"
                if seq > self.last_seq + 1
                else f"row {seq} is out of sequence"
            )
        if prev_hash != self.last_hash:
            self.problem(f"row {seq}: prev_hash does not match the hash of row {self.last_seq}")
        expected = event_hash(
            prev_hash=prev_hash,
            seq=seq,
            occurred_at=occurred_at,
            actor=actor,
            action=action,
            target=target,
            payload_text=payload_text,
            result=result,
            request_id=request_id,
        )
        if expected != stored:
            self.problem(f"row {seq}: content does not match its hash (edited?)")
        if seq == anchor_seq:
            self.hashes[seq] = stored
        self.last_seq, self.last_hash = seq, stored

    def finish(self) -> tuple[str, ...]:
        if self._dropped:
            self.problems.append(f"... and {self._dropped} more problems")
        return tuple(self.problems)


async def verify_audit_chain(
    conn: AsyncConnection[Any], *, anchor: tuple[int, str] | None = None, max_problems: int = 20
) -> ChainReport:
    """Recompute the whole chain in one consistent snapshot; ``anchor`` is a (seq, hash) recorded earlier elsewhere."""
    async with conn.transaction(force_rollback=True):
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur = await conn.execute("SELECT to_regclass('audit.events') IS NOT NULL, to_regclass('audit.chain_head')")
        exists = await cur.fetchone()
        if not exists or not exists[0] or exists[1] is None:
            raise AuditSchemaMissing("no audit schema in this database: apply ops/sql/001_audit.sql first")
        chain = _Chain(max_problems)
        async with conn.cursor(name="sophia_audit_verify") as rows:
            await rows.execute(_ROWS)
            async for row in rows:
                chain.add(row, anchor[0] if anchor else None)
        head_cur = await conn.execute("SELECT seq, hash FROM audit.chain_head")
        heads = await head_cur.fetchall()
        trig_cur = await conn.execute(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgrelid IN ('audit.events'::regclass, 'audit.chain_head'::regclass)"
        )
        triggers = dict(await trig_cur.fetchall())
    if len(heads) != 1:
        chain.problem(f"audit.chain_head has {len(heads)} rows, expected 1")
        head_seq, head_hash = chain.last_seq, chain.last_hash
    else:
        head_seq, head_hash = heads[0]
        if (head_seq, head_hash) != (chain.last_seq, chain.last_hash):
            chain.problem(
                f"chain head says row {head_seq} is the newest but the table ends at row {chain.last_seq} "
                "(rows removed from the end, or the head was moved?)"
            )
    for name in sorted(EXPECTED_TRIGGERS):
        state = triggers.get(name)
        if state is None:
            chain.problem(f"trigger {name} is missing")
        elif state not in ("O", "A"):
            chain.problem(f"trigger {name} is disabled")
    if anchor is not None and chain.hashes.get(anchor[0]) != anchor[1]:
        chain.problem(f"anchor {anchor[0]}:{anchor[1][:12]}… is not in the chain (history rewritten?)")
    problems = chain.finish()
    return ChainReport(not problems, chain.rows, head_seq, head_hash, problems)


__all__ = [
    "AuditEvent",
    "AuditSchemaMissing",
    "ChainReport",
    "append_audit_event",
    "append_audit_event_sync",
    "event_hash",
    "verify_audit_chain",
]
