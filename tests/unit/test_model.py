"""Faults and the run record: parsing rehearsal faults, and a record that survives JSON both ways."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sophia.engine.model import Fault, TrackSample, failing_stages, faults_by_service
from sophia.engine.record import DatabaseUndo, Outcome, Phase, RollbackRecord, RunRecord, StageStatus

SERVICES = ["comms-mcp", "crm-mcp"]


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("comms-mcp:error_rate=1.0", Fault("comms-mcp", "error_rate", 1.0)),
        ("crm-mcp:latency_ms=2000", Fault("crm-mcp", "latency_ms", 2000.0)),
        ("comms-mcp:crash=1", Fault("comms-mcp", "crash", 1.0)),
        ("comms-mcp:memory_mib=300", Fault("comms-mcp", "memory_mib", 300.0)),
        ("stage:synthetics=fail", Fault("stage", "synthetics", 1.0)),
        ("stage:readiness-check=fail", Fault("stage", "readiness-check", 1.0)),
    ],
)
def test_faults_parse(text: str, fault: Fault) -> None:
    assert Fault.parse(text, SERVICES) == fault
    assert Fault.parse(str(fault), SERVICES) == fault  # the report's spelling parses back to the same fault


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("comms-mcp", "expected SERVICE:KIND=VALUE"),
        ("comms-mcp:error_rate", "expected SERVICE:KIND=VALUE"),
        ("nope:error_rate=1", "unknown service 'nope'"),
        ("comms-mcp:explode=1", "unknown kind 'explode'"),
        ("comms-mcp:error_rate=lots", "is not a number"),
        ("comms-mcp:error_rate=1.5", "between 0 and 1"),
        ("comms-mcp:latency_ms=-5", "between 0 and"),
        ("comms-mcp:memory_mib=8192", "between 0 and 4096"),
        ("stage:lint=fail", "unknown stage 'lint'"),
        ("stage:synthetics=1", "a stage fault's only value is 'fail'"),
        ("stage:synthetics", "stage:NAME=fail"),
    ],
)
def test_bad_faults_are_refused_clearly(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Fault.parse(text, SERVICES)


def test_faults_group_by_service() -> None:
    faults = [Fault("comms-mcp", "error_rate", 0.5), Fault("comms-mcp", "latency_ms", 10), Fault("crm-mcp", "crash", 1),
              Fault.parse("stage:synthetics=fail", SERVICES)]  # fmt: skip
    assert faults_by_service(faults) == {
        "comms-mcp": {"error_rate": 0.5, "latency_ms": 10},
        "crm-mcp": {"crash": 1},
    }
    assert failing_stages(faults) == {"synthetics"}


def test_sample_differences_never_go_negative() -> None:
    later = TrackSample(10, 2, ((5.0, 8), (float("inf"), 10)))
    earlier = TrackSample(4, 1, ((5.0, 3), (float("inf"), 4)))
    assert later.minus(earlier) == TrackSample(6, 1, ((5.0, 5), (float("inf"), 6)))
    assert earlier.minus(later) == earlier  # counters went backwards: a restart, so count from zero again


def test_a_run_record_round_trips_through_json() -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    record = RunRecord(
        "r1", "v1.1.0", "local", "local", at, actor="ci", faults=["comms-mcp:crash=1"], skip=["lint-test"]
    )
    record.phase, record.outcome, record.finished_at = Phase.ROLLED_BACK, Outcome.ROLLED_BACK, at
    stage = record.stage("canary-deploy")
    stage.status, stage.started_at, stage.finished_at, stage.budget_s = StageStatus.FAILED, at, at, 300.0
    stage.data = {"canary_traffic_started_at": at.isoformat()}
    record.rollback = RollbackRecord(
        "canary-deploy: boom",
        at,
        detected_at=at,
        completed_at=at,
        duration_s=0.004,
        database=DatabaseUndo("down_files", ["001_audit"], "reverted 001_audit", 0.2),
    )
    record.services = [{"name": "comms-mcp", "stable_version": "v1.0.0", "canary_version": None, "canary_weight": 0}]
    again = RunRecord.from_dict(json.loads(json.dumps(record.as_dict())))
    assert again.as_dict() == record.as_dict()
    assert again.next_stage() == "lint-test"


def test_next_stage_is_the_first_unfinished_one() -> None:
    record = RunRecord("r1", "v1.1.0", "local", "local", datetime.now(UTC))
    for name in ("lint-test", "build-cache"):
        record.stage(name).status = StageStatus.PASSED
    assert record.next_stage() == "canary-deploy"
    for stage in record.stages:
        stage.status = StageStatus.PASSED
    assert record.next_stage() is None
