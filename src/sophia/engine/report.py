"""The run report: report.json (machine-readable), report.md (for people) and junit.xml (for CI: one test case per
stage, the synthetic checks as cases of their own), under runs/<run-id>/.

Charts are optional and drawn by whoever calls (an adapter with a chart library): ``Charts`` maps a file name under
``charts/`` to its SVG text and a caption; report.md shows each beside the table it illustrates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sophia.engine.ci_report import junit_xml, redacted, run_suites
from sophia.engine.model import Artifact
from sophia.engine.record import RunRecord, StageStatus

_MARK = {
    StageStatus.PASSED: "✅ passed",
    StageStatus.FAILED: "❌ failed",
    StageStatus.SKIPPED: "⏭ skipped",
    StageStatus.PENDING: "· not run",
    StageStatus.RUNNING: "… interrupted",
}


@dataclass(frozen=True)
class Chart:
    caption: str
    svg: str
    section: str  # "stages" or "services": the table it goes beside


Charts = Mapping[str, Chart]  # file name (e.g. "stages.svg") → chart

JUNIT_FILE = "junit.xml"


def report_dict(record: RunRecord) -> dict[str, Any]:
    return record.as_dict()


def render_markdown(record: RunRecord, charts: Charts | None = None) -> str:
    charts = charts or {}
    sections = (
        _summary(record),
        _stages(record),
        _images(charts, "stages"),
        _rollback(record),
        _services(record),
        _images(charts, "services"),
        _readiness(record),
        _traffic(record),
        _notes(record),
        _notifications(record),
    )
    return "\n".join(line for section in sections for line in section) + "\n"


def _images(charts: Charts, section: str) -> list[str]:
    chosen = [(name, chart) for name, chart in charts.items() if chart.section == section]
    return ["", *(f"![{chart.caption}](charts/{name})" for name, chart in chosen)] if chosen else []


def _summary(record: RunRecord) -> list[str]:
    outcome = record.outcome.value if record.outcome else record.phase.value
    finished = f", finished {record.finished_at.isoformat()}" if record.finished_at else ""
    lines = [
        f"# Release {record.version} — {outcome}",
        "",
        f"- run: `{record.run_id}` on platform `{record.platform}` (profile `{record.profile}`), by {record.actor}",
        f"- started {record.created_at.isoformat()}{finished}",
    ]
    if record.undo_of:
        lines.append(f"- undo of {record.undo_of}: the earlier release shipped back through canary, rollout and "
                     "readiness")  # fmt: skip
    if record.faults:
        lines.append(f"- injected faults: {', '.join(f'`{f}`' for f in record.faults)}")
    if record.artifact:
        artifact = Artifact.from_dict(record.artifact)
        hit = "cache hit" if artifact.cache_hit else "fresh build"
        lines.append(f"- artifact: {artifact.kind.value} `{artifact.name}` ({hit}, git `{artifact.git_sha[:10]}`)")
    lines.append(f"- for CI: [{JUNIT_FILE}]({JUNIT_FILE}) (JUnit XML: one test case per stage and per synthetic check)")
    return lines


def _stages(record: RunRecord) -> list[str]:
    lines = ["", "| # | stage | status | duration | budget | detail |", "|---|---|---|---|---|---|"]
    for i, stage in enumerate(record.stages, 1):
        duration = f"{stage.duration_s:.2f}s" if stage.duration_s is not None else "—"
        budget = f"{stage.budget_s:g}s" if stage.budget_s is not None else "—"
        detail = stage.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {i} | {stage.name} | {_MARK[stage.status]} | {duration} | {budget} | {detail} |")
    return lines


def _rollback(record: RunRecord) -> list[str]:
    rb = record.rollback
    if rb is None:
        return []
    lines = ["", "## Rollback", "", f"- reason: {rb.reason}", f"- triggered at {rb.triggered_at.isoformat()}"]
    if rb.detected_at:
        lines.append(f"- first failing observation at {rb.detected_at.isoformat()}")
    if rb.completed_at:
        lines.append(f"- traffic back on stable at {rb.completed_at.isoformat()} ({rb.duration_s:.3f}s)")
    if rb.error:
        lines.append(f"- **rollback failed**: {rb.error}")
    db = rb.database
    if db is not None:
        how = db.method.replace("_", " ")
        took = f" in {db.duration_s:g}s" if db.duration_s is not None else ""
        if db.done:
            lines.append(f"- database: {', '.join(db.migrations)} taken back by {how}{took}: {db.detail}")
        else:
            lines.append(f"- **database not restored** ({how}): {db.error}")
    return lines


def _services(record: RunRecord) -> list[str]:
    if not record.services:
        return []
    lines = ["", "## Services", "", "| service | version | canary | weight |", "|---|---|---|---|"]
    for svc in record.services:
        canary = svc["canary_version"] or "—"
        lines.append(f"| {svc['name']} | {svc['stable_version']} | {canary} | {svc['canary_weight']} % |")
    return lines


def _readiness(record: RunRecord) -> list[str]:
    data = record.stage("readiness-check").data
    usage, monitoring = data.get("resources") or [], data.get("monitoring") or {}
    sections = [_usage(usage, data.get("resources_unmeasured")), _pools(data.get("pools")), _performance(data)]
    sections.append([f"- monitoring {url}: {state}" for url, state in monitoring.items()])
    if not any(sections):
        return []
    return ["", "## Readiness findings", *(line for section in sections if section for line in ["", *section])]


def _usage(usage: list[dict[str, Any]], unmeasured: str | None) -> list[str]:
    if not usage:
        return [f"- {unmeasured}"] if unmeasured else []
    lines = ["| service | track | memory | CPU (avg since start) |", "|---|---|---|---|"]
    for u in usage:
        cpu = "—" if u.get("cpu_percent") is None else f"{u['cpu_percent']:.1f} %"
        lines.append(f"| {u['service']} | {u['track']} | {u['memory_mib']:.1f} MiB | {cpu} |")
    return lines


def _pools(pools: str | dict[str, Any] | None) -> list[str]:
    if not pools:
        return []
    if isinstance(pools, str):
        return [f"- database pools: {pools}"]
    lines = ["| service | pool | size | in use | waiting |", "|---|---|---|---|---|"]
    for service, found in pools.items():
        if isinstance(found, str):
            lines.append(f"| {service} | — | cannot read: {found} | | |")
            continue
        lines += [f"| {service} | {p['pool']} | {p['size']} | {p['in_use']} | {p['waiting']} |" for p in found]
    return lines


def _performance(data: Mapping[str, Any]) -> list[str]:
    current, baseline = data.get("performance") or {}, data.get("baseline") or {}
    lines = [f"- {note}" for note in data.get("performance_notes") or []]
    if not current:
        return lines
    before = baseline.get("performance") or {}
    against = f"against {baseline['version']} (run `{baseline['run_id']}`)" if baseline else "(the next baseline)"
    lines += [""] if lines else []
    lines += [f"Performance of each stable track {against}:", "",
              "| service | requests | error rate | p95 | baseline error rate | baseline p95 |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for service, now in current.items():
        then = before.get(service) or {}
        lines.append(f"| {service} | {now['requests']} | {_rate(now.get('error_rate'))} | {_ms(now.get('p95_ms'))} "
                     f"| {_rate(then.get('error_rate'))} | {_ms(then.get('p95_ms'))} |")  # fmt: skip
    return lines


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _traffic(record: RunRecord) -> list[str]:
    if not record.traffic:
        return []
    sent = sum(c.get("sent", 0) for c in record.traffic.values())
    errors = sum(c.get("errors", 0) for c in record.traffic.values())
    return [
        "",
        "## Load generator",
        "",
        f"{sent} requests to {len(record.traffic)} services ({errors} failed), labelled `x-sophia-source: loadgen` "
        '(`source_workload="sophia-loadgen"` in the routers\' metrics).',
    ]


def _notes(record: RunRecord) -> list[str]:
    return ["", "## Notes", "", *(f"- {note}" for note in record.notes)] if record.notes else []


def _notifications(record: RunRecord) -> list[str]:
    if not record.notifications:
        return []
    lines = ["", "## Notifications", ""]
    for note in record.notifications:
        state = "delivered" if note.get("delivered") else f"not delivered ({note.get('error')})"
        lines.append(f"- {note.get('channel')}: {note.get('kind')} — {state}")
    return lines


def write_report(
    record: RunRecord, runs_dir: Path, charts: Charts | None = None, secrets: Iterable[str | None] = ()
) -> Path:
    """Write report.json, report.md (and its charts) and junit.xml (cleaned of ``secrets``) atomically, and point
    ``runs/latest`` at the run's folder."""
    folder = runs_dir / record.run_id
    folder.mkdir(parents=True, exist_ok=True)
    if charts:
        (folder / "charts").mkdir(exist_ok=True)
        for name, chart in charts.items():
            _atomic_write(folder / "charts" / name, chart.svg)
    _atomic_write(folder / "report.json", json.dumps(report_dict(record), indent=2) + "\n")
    _atomic_write(folder / "report.md", render_markdown(record, charts))
    _atomic_write(folder / JUNIT_FILE, junit_xml(redacted(run_suites(record), secrets)))
    latest = runs_dir / "latest"
    tmp = runs_dir / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(record.run_id)
    tmp.replace(latest)
    return folder


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
