"""What the dashboard shows of one run, as plain values: built from the run record and its event log alone.

Pure functions of stored data, so the page, the live stream and the tests all see the same thing. Time enters only
as ``now`` (a running stage's elapsed time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sophia.engine.events import Event, EventKind
from sophia.engine.record import RunRecord, StageStatus

# The live charts keep this many looks per service; older ones drop off the left edge.
MAX_POINTS = 300
# The event log shows this many of the newest events (observations are charted, not listed).
MAX_LOG = 200


@dataclass(frozen=True)
class StageRow:
    name: str
    status: str
    budget_s: float | None
    elapsed_s: float | None
    over_budget: bool
    detail: str


@dataclass(frozen=True)
class ServiceRow:
    name: str
    stable_version: str | None
    canary_version: str | None
    weight: int
    verdict: str | None
    canary_error_rate: float | None
    stable_error_rate: float | None
    canary_p95_ms: float | None
    stable_p95_ms: float | None
    llr: float | None
    fail_bound: float | None
    pass_bound: float | None
    severe_llr: float | None
    severe_fail_bound: float | None


@dataclass
class Series:
    """One service's looks over time: seconds since the run started, and each track's figures then."""

    t: list[float] = field(default_factory=list)
    canary_error_rate: list[float | None] = field(default_factory=list)
    stable_error_rate: list[float | None] = field(default_factory=list)
    canary_p95_ms: list[float | None] = field(default_factory=list)
    stable_p95_ms: list[float | None] = field(default_factory=list)
    llr: list[float | None] = field(default_factory=list)
    severe_llr: list[float | None] = field(default_factory=list)
    fail_bound: float | None = None
    pass_bound: float | None = None
    severe_fail_bound: float | None = None

    def add(self, t: float, figures: dict[str, Any]) -> None:
        self.t.append(t)
        for name in _CURVES:
            getattr(self, name).append(figures.get(name))
        for name in ("fail_bound", "pass_bound", "severe_fail_bound"):
            setattr(self, name, figures.get(name, getattr(self, name)))
        if len(self.t) > MAX_POINTS:
            for name in ("t", *_CURVES):
                del getattr(self, name)[0]


_CURVES = ("canary_error_rate", "stable_error_rate", "canary_p95_ms", "stable_p95_ms", "llr", "severe_llr")


@dataclass(frozen=True)
class Decision:
    at: str
    stage: str | None
    decision: str
    message: str


@dataclass
class RunView:
    run_id: str
    version: str
    platform: str
    phase: str
    outcome: str | None
    terminal: bool
    created_at: str
    finished_at: str | None
    stages: list[StageRow]
    services: list[ServiceRow]
    series: dict[str, Series]
    health: dict[str, Any]  # {"targets": n, "probes": n, "failed": [targets that failed a probe]}
    decisions: list[Decision]
    log: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    rollback: dict[str, Any] | None
    notes: list[str]
    events_seen: int
    # What readiness-check found (resources, database pools, performance against the baseline, monitoring), as
    # the stage recorded it; empty until it has run.
    readiness: dict[str, Any] = field(default_factory=dict)

    def charts(self) -> dict[str, Any]:
        """The charts' data, as the page's script reads it."""
        return {name: vars(series) for name, series in self.series.items()}


def build_view(record: RunRecord, events: list[Event], now: datetime) -> RunView:
    series: dict[str, Series] = {}
    latest: dict[str, dict[str, Any]] = {}
    health: dict[str, Any] = {}
    decisions: list[Decision] = []
    for event in events:
        if event.kind is not EventKind.OBSERVATION:
            continue
        t = round((event.at - record.created_at).total_seconds(), 3)
        for name, figures in (event.data.get("services") or {}).items():
            series.setdefault(name, Series()).add(t, figures)
            latest[name] = figures
        health = dict(event.data.get("health") or health)
        decision = event.data.get("decision")
        if decision and (not decisions or (decisions[-1].stage, decisions[-1].decision) != (event.stage, decision)):
            # the first look of each verdict: a canary passing at the manual gate says so once, not every look
            decisions.append(Decision(event.at.isoformat(), event.stage, decision, event.message))
    log = [e.as_dict() for e in events if e.kind is not EventKind.OBSERVATION][-MAX_LOG:]
    return RunView(
        run_id=record.run_id,
        version=record.version,
        platform=record.platform,
        phase=record.phase.value,
        outcome=record.outcome.value if record.outcome else None,
        terminal=record.phase.terminal,
        created_at=record.created_at.isoformat(),
        finished_at=record.finished_at.isoformat() if record.finished_at else None,
        stages=[_stage_row(s, now) for s in record.stages],
        services=_service_rows(record, latest),
        series=series,
        health=health,
        decisions=decisions,
        log=log,
        notifications=list(record.notifications),
        rollback=record.rollback.as_dict() if record.rollback else None,
        notes=list(record.notes),
        events_seen=len(events),
        readiness=dict(record.stage("readiness-check").data),
    )


def _stage_row(stage: Any, now: datetime) -> StageRow:
    elapsed = stage.duration_s
    if elapsed is None and stage.status is StageStatus.RUNNING and stage.started_at is not None:
        elapsed = round((now - stage.started_at).total_seconds(), 1)
    over = elapsed is not None and stage.budget_s is not None and elapsed > stage.budget_s
    return StageRow(stage.name, stage.status.value, stage.budget_s, elapsed, over, stage.detail)


def _service_rows(record: RunRecord, latest: dict[str, dict[str, Any]]) -> list[ServiceRow]:
    known = {row["name"]: row for row in record.services}
    names = list(known) or list(record.weights) or list(latest)
    rows = []
    for name in names:
        row, figures = known.get(name, {}), latest.get(name, {})
        weight = record.weights.get(name, row.get("canary_weight", 0))
        rows.append(
            ServiceRow(
                name=name,
                stable_version=row.get("stable_version"),
                canary_version=row.get("canary_version"),
                weight=weight if not record.phase.terminal else row.get("canary_weight", weight),
                verdict=figures.get("verdict"),
                canary_error_rate=figures.get("canary_error_rate"),
                stable_error_rate=figures.get("stable_error_rate"),
                canary_p95_ms=figures.get("canary_p95_ms"),
                stable_p95_ms=figures.get("stable_p95_ms"),
                llr=figures.get("llr"),
                fail_bound=figures.get("fail_bound"),
                pass_bound=figures.get("pass_bound"),
                severe_llr=figures.get("severe_llr"),
                severe_fail_bound=figures.get("severe_fail_bound"),
            )
        )
    return rows


def focus(view: RunView) -> str | None:
    """The service the charts open on: one the analysis failed, else the canary with the highest error rate."""
    failed = [s.name for s in view.services if s.verdict == "fail"]
    if failed:
        return failed[0]
    charted = [s for s in view.services if s.name in view.series]
    if not charted:
        return next(iter(view.series), None)
    return max(charted, key=lambda s: s.canary_error_rate or 0.0).name
