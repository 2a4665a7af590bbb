"""The store's JSON codec and secret scrubbing; also the sample records the other store tests share."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sophia.engine.events import Event, EventKind
from sophia.engine.record import Outcome, Phase, RollbackRecord, RunRecord, StageStatus
from sophia.engine.store import CorruptRecordError
from sophia.store.codec import event_row, parse_event, parse_record, record_json
from sophia.store.redact import password_of, redact

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def planned(run_id: str = "r1", *, created_at: datetime = T0, version: str = "2.4.0") -> RunRecord:
    return RunRecord(run_id, version, "local", "local", created_at, actor="ci:octocat", faults=["canary-5xx"])


def full_record(run_id: str = "r1") -> RunRecord:
    """A run that went through every stage, failed its synthetics and rolled back — every field filled in."""
    record = planned(run_id)
    record.skip = ["lint-test"]
    for i, stage in enumerate(record.stages):
        stage.started_at = T0 + timedelta(seconds=10 * i)
        stage.finished_at = stage.started_at + timedelta(seconds=7, microseconds=250)
        stage.budget_s = 60.0 * (i + 1)
        stage.status = StageStatus.SKIPPED if i == 0 else StageStatus.PASSED
        stage.detail = f"stage {i} — ok ✓"
        stage.data = {"weights": [0, 10, 50], "i": i, "nested": {"ok": True, "ratio": 0.25, "none": None}}
    record.stage("synthetics").status = StageStatus.FAILED
    record.stage("full-rollout").status = StageStatus.PENDING
    record.stage("readiness-check").status = StageStatus.PENDING
    record.rollback = RollbackRecord(
        reason="synthetics: crm-mcp task not created",
        triggered_at=T0 + timedelta(minutes=1),
        detected_at=T0 + timedelta(seconds=59),
        completed_at=T0 + timedelta(minutes=1, seconds=1),
        duration_s=0.4321,
        error=None,
    )
    record.services = [
        {"name": "comms-mcp", "stable_version": "2.3.9", "canary_version": None, "canary_weight": 0},
        {"name": "crm-mcp", "stable_version": "2.3.9", "canary_version": None, "canary_weight": 0},
    ]
    record.artifact = {
        "version": "2.4.0",
        "git_sha": "abc123",
        "content_hash": "ff",
        "path": "/a.whl",
        "cache_hit": True,
    }
    record.notifications = [{"channel": "slack", "ok": True, "attempts": 2}]
    record.phase, record.outcome = Phase.ROLLED_BACK, Outcome.ROLLED_BACK
    record.finished_at = T0 + timedelta(minutes=1, seconds=2)
    return record


def event(run_id: str = "r1", message: str = "m", *, n: int = 0, kind: EventKind = EventKind.NOTE) -> Event:
    return Event(kind, T0 + timedelta(milliseconds=n), run_id, message, "canary-deploy", {"n": n})


def test_a_full_record_survives_the_json_round_trip() -> None:
    record = full_record()
    assert parse_record("r1", record_json(record)) == record


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ('"a string"', "expected a JSON object, found str"),
        ("[1, 2]", "expected a JSON object, found list"),
        ('{"run_id": "r1"}', "missing field 'created_at'"),
        (json.dumps({**full_record().as_dict(), "phase": "exploded"}), "'exploded' is not a valid Phase"),
        (json.dumps({**full_record().as_dict(), "stages": 42}), "TypeError"),
        (json.dumps(full_record("r2").as_dict()), "it names run 'r2'"),
    ],
)
def test_a_record_that_does_not_parse_or_validate_is_corrupt(text: str, problem: str) -> None:
    with pytest.raises(CorruptRecordError, match="run r1") as caught:
        parse_record("r1", text)
    assert problem in str(caught.value)


def test_events_keep_their_fields_and_non_json_data_becomes_text() -> None:
    original = Event(
        EventKind.WEIGHTS_CHANGED, T0, "r1", "canary 10 %", "canary-deploy", {"weight": 10, "at": T0, "tags": ("a",)}
    )
    back = parse_event("r1", event_row(3, original))
    assert back == Event(
        EventKind.WEIGHTS_CHANGED,
        T0,
        "r1",
        "canary 10 %",
        "canary-deploy",
        {"weight": 10, "at": T0.isoformat(), "tags": ["a"]},
    )


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://sophia:s3cr3t-Pa55@db.example:5432/app",
        "postgresql://sophia:s3cr3t-Pa55@db.example:5432/app?sslmode=require",
        "host=db.example user=sophia password=s3cr3t-Pa55 dbname=app",
    ],
)
def test_the_password_is_found_and_scrubbed(dsn: str) -> None:
    assert password_of(dsn) == "s3cr3t-Pa55"
    assert "s3cr3t-Pa55" not in redact(f"could not use {dsn}: s3cr3t-Pa55 refused", password_of(dsn))


def test_a_malformed_dsn_is_still_scrubbed_by_shape() -> None:
    dsn = "postgresql://sophia:s3cr3t-Pa55@db.example:5432/app?x=1 2"
    assert password_of(dsn) is None
    assert "s3cr3t-Pa55" not in redact(f"bad {dsn} and password=s3cr3t-Pa55", None)
