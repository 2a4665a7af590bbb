"""Records and events to JSON and back. Both stores go through here, so they store and return exactly the same."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum

from sophia.engine.events import Event, EventKind
from sophia.engine.record import Outcome, Phase, RunRecord
from sophia.engine.store import CorruptRecordError, RunSummary


def _default(value: object) -> object:
    """JSON for the few non-JSON values events carry: times as ISO text, enums by value, sets as lists."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), default=_default, ensure_ascii=False)


def record_json(record: RunRecord) -> str:
    return dumps(record.as_dict())


def parse_record(run_id: str, text: str) -> RunRecord:
    """The record stored for ``run_id``; :class:`CorruptRecordError` when it does not parse or validate."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise CorruptRecordError(run_id, f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CorruptRecordError(run_id, f"expected a JSON object, found {type(raw).__name__}")
    try:
        record = RunRecord.from_dict(raw)
    except (KeyError, ValueError, TypeError, AttributeError, AssertionError) as exc:
        problem = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise CorruptRecordError(run_id, problem) from None
    if record.run_id != run_id:
        raise CorruptRecordError(run_id, f"it names run {record.run_id!r}")
    return record


def utc(value: datetime) -> datetime:
    """Aware UTC; a naive time is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class EventRow:
    """An event as stored: its place in the run's log and its fields as the database holds them."""

    seq: int
    kind: str
    at: datetime
    stage: str | None
    message: str
    data: str  # JSON text


def event_row(seq: int, event: Event) -> EventRow:
    return EventRow(seq, event.kind.value, utc(event.at), event.stage, event.message, dumps(dict(event.data)))


def parse_event(run_id: str, row: EventRow) -> Event:
    try:
        kind = EventKind(row.kind)
        data = json.loads(row.data)
    except ValueError as exc:
        raise CorruptRecordError(run_id, f"event #{row.seq}: {exc}") from None
    if not isinstance(data, Mapping):
        raise CorruptRecordError(run_id, f"event #{row.seq}: data is not a JSON object")
    return Event(kind, utc(row.at), run_id, row.message, row.stage, dict(data))


def summary(
    *,
    run_id: str,
    version: str,
    phase: str,
    outcome: str | None,
    created_at: datetime,
    finished_at: datetime | None,
    actor: str,
) -> RunSummary:
    try:
        return RunSummary(
            run_id=run_id,
            version=version,
            phase=Phase(phase),
            outcome=Outcome(outcome) if outcome else None,
            created_at=utc(created_at),
            finished_at=utc(finished_at) if finished_at else None,
            actor=actor,
        )
    except ValueError as exc:
        raise CorruptRecordError(run_id, str(exc)) from None


def summary_of(record: RunRecord) -> RunSummary:
    return RunSummary(
        record.run_id,
        record.version,
        record.phase,
        record.outcome,
        utc(record.created_at),
        utc(record.finished_at) if record.finished_at else None,
        record.actor,
    )


def check_event(record_run_id: str, event: Event | None) -> None:
    if event is not None and event.run_id != record_run_id:
        raise ValueError(f"event of run {event.run_id} saved with the record of run {record_run_id}")
