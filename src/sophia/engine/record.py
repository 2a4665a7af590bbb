"""The run record: everything a run has decided and done, in a shape that serialises to JSON and back.

It is what the report is rendered from and what the durable store keeps, so a run can be resumed in another
process from the record alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sophia.config import STAGE_NAMES


class Phase(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    ROLLING_BACK = "rolling_back"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    ABORTED = "aborted"

    @property
    def terminal(self) -> bool:
        return self in {Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ROLLBACK_FAILED, Phase.ABORTED}


class Outcome(StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    ABORTED = "aborted"

    @property
    def exit_code(self) -> int:
        return {Outcome.PROMOTED: 0, Outcome.ROLLED_BACK: 1, Outcome.ABORTED: 1, Outcome.ROLLBACK_FAILED: 3}[self]


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class StageRecord:
    name: str
    status: StageStatus = StageStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    budget_s: float | None = None
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return round((self.finished_at - self.started_at).total_seconds(), 3)
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": self.duration_s,
            "budget_s": self.budget_s,
            "detail": self.detail,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StageRecord:
        return cls(
            name=raw["name"],
            status=StageStatus(raw["status"]),
            started_at=_dt(raw.get("started_at")),
            finished_at=_dt(raw.get("finished_at")),
            budget_s=raw.get("budget_s"),
            detail=raw.get("detail", ""),
            data=dict(raw.get("data") or {}),
        )


@dataclass
class DatabaseUndo:
    """How a rollback took back the migrations of its run (after the traffic had moved)."""

    method: str  # a ``decide.DbUndo`` value
    migrations: list[str]  # what the run had applied, oldest first
    detail: str = ""
    duration_s: float | None = None
    error: str | None = None  # set when the database could not be brought back

    @property
    def done(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DatabaseUndo:
        return cls(raw["method"], list(raw.get("migrations") or []), raw.get("detail", ""), raw.get("duration_s"),
                   raw.get("error"))  # fmt: skip


@dataclass
class RollbackRecord:
    reason: str
    triggered_at: datetime
    detected_at: datetime | None = None
    completed_at: datetime | None = None
    duration_s: float | None = None
    error: str | None = None
    database: DatabaseUndo | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("triggered_at", "detected_at", "completed_at"):
            out[key] = _iso(getattr(self, key))
        out["database"] = self.database.as_dict() if self.database else None
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RollbackRecord:
        triggered = _dt(raw["triggered_at"])
        assert triggered is not None
        return cls(
            reason=raw["reason"],
            triggered_at=triggered,
            detected_at=_dt(raw.get("detected_at")),
            completed_at=_dt(raw.get("completed_at")),
            duration_s=raw.get("duration_s"),
            error=raw.get("error"),
            database=DatabaseUndo.from_dict(raw["database"]) if raw.get("database") else None,
        )


@dataclass
class RunRecord:
    run_id: str
    version: str
    platform: str
    profile: str
    created_at: datetime
    actor: str = "unknown"
    faults: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    phase: Phase = Phase.PLANNED
    outcome: Outcome | None = None
    finished_at: datetime | None = None
    stages: list[StageRecord] = field(default_factory=lambda: [StageRecord(n) for n in STAGE_NAMES])
    rollback: RollbackRecord | None = None
    services: list[dict[str, Any]] = field(default_factory=list)
    artifact: dict[str, Any] | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, int] = field(default_factory=dict)  # the canary weights last committed, per service
    notes: list[str] = field(default_factory=list)  # things that went wrong without failing the run
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)  # the load generator's requests, per service
    undo_of: str | None = None  # set on a ``sophia undo`` run: the version it takes back

    def stage(self, name: str) -> StageRecord:
        for record in self.stages:
            if record.name == name:
                return record
        raise KeyError(name)

    def next_stage(self) -> str | None:
        """The first stage that has not finished, or None when every stage has."""
        for record in self.stages:
            if record.status in {StageStatus.PENDING, StageStatus.RUNNING}:
                return record.name
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "version": self.version,
            "platform": self.platform,
            "profile": self.profile,
            "actor": self.actor,
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
            "phase": self.phase.value,
            "outcome": self.outcome.value if self.outcome else None,
            "faults": list(self.faults),
            "skip": list(self.skip),
            "stages": [s.as_dict() for s in self.stages],
            "rollback": self.rollback.as_dict() if self.rollback else None,
            "services": self.services,
            "artifact": self.artifact,
            "notifications": self.notifications,
            "weights": self.weights,
            "notes": self.notes,
            "traffic": self.traffic,
            "undo_of": self.undo_of,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunRecord:
        created = _dt(raw["created_at"])
        assert created is not None
        return cls(
            run_id=raw["run_id"],
            version=raw["version"],
            platform=raw["platform"],
            profile=raw.get("profile", "production"),
            created_at=created,
            actor=raw.get("actor", "unknown"),
            faults=list(raw.get("faults") or []),
            skip=list(raw.get("skip") or []),
            phase=Phase(raw["phase"]),
            outcome=Outcome(raw["outcome"]) if raw.get("outcome") else None,
            finished_at=_dt(raw.get("finished_at")),
            stages=[StageRecord.from_dict(s) for s in raw["stages"]],
            rollback=RollbackRecord.from_dict(raw["rollback"]) if raw.get("rollback") else None,
            services=list(raw.get("services") or []),
            artifact=raw.get("artifact"),
            notifications=list(raw.get("notifications") or []),
            weights=dict(raw.get("weights") or {}),
            notes=list(raw.get("notes") or []),
            traffic=dict(raw.get("traffic") or {}),
            undo_of=raw.get("undo_of"),
        )
