"""The report's charts as SVG (pygal): the dashboard's charts, drawn once from the same view of the run.

Stage durations against budgets, and for the services worth a look — those the analysis failed, else the canaries
with the highest error rate, at most ``MAX_SERVICES`` — error rate and p95 latency canary vs stable, and the
sequential tests' evidence against their fail bounds, over the run's time. pygal writes SVG itself (no
rasteriser, no numpy), so a report costs a few milliseconds per chart.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pygal
from pygal.style import Style

from sophia.dashboard.view import RunView, Series, build_view
from sophia.engine.events import Event
from sophia.engine.record import RunRecord
from sophia.engine.report import Chart, Charts

MAX_SERVICES = 3
STYLE = Style(background="white", plot_background="white", colors=("#d62728", "#1f77b4"))  # canary red, stable blue
EVIDENCE = Style(background="white", plot_background="white", colors=("#9467bd", "#ff7f0e", "#9467bd", "#ff7f0e"))
_OPTIONS = {"style": STYLE, "width": 720, "height": 300, "show_dots": True, "dots_size": 2, "legend_at_bottom": True,
            "x_title": "seconds since the run started", "disable_xml_declaration": True}  # fmt: skip


def report_charts(record: RunRecord, events: list[Event]) -> Charts:
    view = build_view(record, events, record.finished_at or datetime.now(UTC))
    charts: dict[str, Chart] = {}
    if any(s.elapsed_s is not None for s in view.stages):
        charts["stages.svg"] = Chart("stage durations against budgets", _stages(view), "stages")
    for name in _worth_a_look(view):
        series = view.series[name]
        charts[f"{name}-errors.svg"] = Chart(f"{name}: error rate, canary vs stable", _errors(name, series),
                                             "services")  # fmt: skip
        charts[f"{name}-latency.svg"] = Chart(f"{name}: p95 latency, canary vs stable", _latency(name, series),
                                              "services")  # fmt: skip
        charts[f"{name}-evidence.svg"] = Chart(f"{name}: sequential evidence on errors against the fail bounds",
                                               _evidence(name, series), "services")  # fmt: skip
    return charts


def _worth_a_look(view: RunView) -> list[str]:
    charted = [s for s in view.services if s.name in view.series]
    failed = [s.name for s in charted if s.verdict == "fail"]
    if failed:
        return failed[:MAX_SERVICES]
    ranked = sorted(charted, key=lambda s: s.canary_error_rate or 0.0, reverse=True)
    return [s.name for s in ranked[:MAX_SERVICES]]


def _stages(view: RunView) -> str:
    chart = pygal.HorizontalBar(**{**_OPTIONS, "x_title": "seconds"}, title="Stage duration against budget")
    ran = [s for s in view.stages if s.elapsed_s is not None]
    chart.x_labels = [s.name for s in ran]
    chart.add("took", [s.elapsed_s for s in ran])
    chart.add("budget", [s.budget_s for s in ran])
    return str(chart.render(is_unicode=True))


def _xy(series: Series, values: list[float | None], scale: float = 1.0) -> list[tuple[float, float] | None]:
    return [None if v is None else (t, v * scale) for t, v in zip(series.t, values, strict=True)]


def _flat(series: Series, value: float | None) -> list[tuple[float, float]]:
    return [] if value is None or not series.t else [(series.t[0], value), (series.t[-1], value)]


def _errors(name: str, series: Series) -> str:
    chart = pygal.XY(**_OPTIONS, title=f"{name}: error rate (%)")
    chart.add("canary", _xy(series, series.canary_error_rate, 100))
    chart.add("stable", _xy(series, series.stable_error_rate, 100))
    return str(chart.render(is_unicode=True))


def _latency(name: str, series: Series) -> str:
    chart = pygal.XY(**_OPTIONS, title=f"{name}: p95 latency (ms)")
    chart.add("canary p95", _xy(series, series.canary_p95_ms))
    chart.add("stable p95", _xy(series, series.stable_p95_ms))
    return str(chart.render(is_unicode=True))


def _evidence(name: str, series: Series) -> str:
    chart = pygal.XY(**{**_OPTIONS, "style": EVIDENCE}, title=f"{name}: evidence on errors (log likelihood ratio)")
    chart.add("primary evidence", _xy(series, series.llr))
    chart.add("severe evidence", _xy(series, series.severe_llr))
    chart.add("primary fail bound", _flat(series, series.fail_bound), stroke_style={"dasharray": "6,4"})
    chart.add("severe fail bound", _flat(series, series.severe_fail_bound), stroke_style={"dasharray": "6,4"})
    return str(chart.render(is_unicode=True))
