"""The engine's metrics: an event sink that keeps Prometheus metrics of the run it watches, and their endpoint.

Every figure comes from an event the run loop emits, so the metrics say what the engine recorded, nothing more:
runs by outcome, each stage's status, duration and budget, the rollback's duration, each service's canary weight,
verdict, error rates and sequential evidence, and notifications by result.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, push_to_gateway, start_http_server

from sophia.engine.events import Event, EventKind

STAGE_STATES = ["pending", "running", "passed", "failed", "skipped"]
VERDICTS = ["inconclusive", "pass", "fail"]


class EngineMetrics:
    """Call it with each event (it is an ``EventSink``); ``registry`` holds what it measured."""

    def __init__(self, services: list[str], registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._services = list(services)
        r = self.registry
        self.runs = Counter("sophia_runs", "Runs ended, by outcome", ["outcome"], registry=r)
        self.active = Gauge("sophia_run_active", "1 while this process executes the run", ["run_id"], registry=r)
        self.stage_status = Enum("sophia_stage_status", "Each stage's status", ["stage"], states=STAGE_STATES,
                                 registry=r)  # fmt: skip
        self.stage_duration = Gauge("sophia_stage_duration_seconds", "How long each stage took", ["stage"], registry=r)
        self.stage_budget = Gauge("sophia_stage_budget_seconds", "Each stage's budget", ["stage"], registry=r)
        self.rollbacks = Counter("sophia_rollbacks", "Rollbacks finished, by result", ["result"], registry=r)
        self.rollback_duration = Gauge(
            "sophia_rollback_duration_seconds", "From the rollback decision to every weight back on stable", registry=r
        )
        self.weight = Gauge("sophia_canary_weight_percent", "Share of traffic on the canary", ["service"], registry=r)
        self.verdict = Enum("sophia_canary_verdict", "The canary analysis' verdict at its latest look", ["service"],
                            states=VERDICTS, registry=r)  # fmt: skip
        self.error_rate = Gauge("sophia_canary_error_rate", "Error rate since the step began, per track",
                                ["service", "track"], registry=r)  # fmt: skip
        self.evidence = Gauge("sophia_canary_evidence", "Sequential test's log likelihood ratio on errors",
                              ["service", "design"], registry=r)  # fmt: skip
        self.fail_bound = Gauge("sophia_canary_evidence_fail_bound", "Evidence at which the canary fails",
                                ["service", "design"], registry=r)  # fmt: skip
        self.notifications = Counter("sophia_notifications", "Notifications, by channel, kind and result",
                                     ["channel", "kind", "result"], registry=r)  # fmt: skip

    def __call__(self, event: Event) -> None:
        self.active.labels(event.run_id).set(0 if event.kind is EventKind.RUN_FINISHED else 1)
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            handler(self, event)

    def _started(self, event: Event) -> None:
        for name in self._services:
            self.weight.labels(name).set(0)

    def _stage_started(self, event: Event) -> None:
        stage = event.stage or ""
        self.stage_status.labels(stage).state("running")
        if (budget := event.data.get("budget_s")) is not None:
            self.stage_budget.labels(stage).set(float(budget))

    def _stage_finished(self, event: Event) -> None:
        stage = event.stage or ""
        status = str(event.data.get("status", ""))
        if status in STAGE_STATES:
            self.stage_status.labels(stage).state(status)
        if (duration := event.data.get("duration_s")) is not None:
            self.stage_duration.labels(stage).set(float(duration))

    def _weights(self, event: Event) -> None:
        weight = float(event.data.get("weight", 0))
        for name in self._services:
            self.weight.labels(name).set(weight)

    def _observation(self, event: Event) -> None:
        services: Mapping[str, Mapping[str, Any]] = event.data.get("services") or {}
        for name, figures in services.items():
            if figures.get("verdict") in VERDICTS:
                self.verdict.labels(name).state(figures["verdict"])
            for track in ("canary", "stable"):
                if (rate := figures.get(f"{track}_error_rate")) is not None:
                    self.error_rate.labels(name, track).set(rate)
            for design, prefix in (("primary", ""), ("severe", "severe_")):
                if (llr := figures.get(f"{prefix}llr")) is not None:
                    self.evidence.labels(name, design).set(llr)
                if (bound := figures.get(f"{prefix}fail_bound")) is not None:
                    self.fail_bound.labels(name, design).set(bound)

    def _rollback_started(self, event: Event) -> None:
        for name in self._services:
            self.weight.labels(name).set(0)

    def _rollback_finished(self, event: Event) -> None:
        duration = event.data.get("duration_s")
        self.rollbacks.labels("failed" if duration is None else "completed").inc()
        if duration is not None:
            self.rollback_duration.set(float(duration))

    def _finished(self, event: Event) -> None:
        self.runs.labels(str(event.data.get("outcome", event.message))).inc()
        for name in self._services:
            self.weight.labels(name).set(0)
        for sent in event.data.get("notifications") or ():
            result = "delivered" if sent.get("delivered") else "failed"
            self.notifications.labels(str(sent.get("channel")), str(sent.get("kind")), result).inc()


_HANDLERS = {
    EventKind.RUN_STARTED: EngineMetrics._started,
    EventKind.STAGE_STARTED: EngineMetrics._stage_started,
    EventKind.STAGE_FINISHED: EngineMetrics._stage_finished,
    EventKind.WEIGHTS_CHANGED: EngineMetrics._weights,
    EventKind.OBSERVATION: EngineMetrics._observation,
    EventKind.ROLLBACK_STARTED: EngineMetrics._rollback_started,
    EventKind.ROLLBACK_FINISHED: EngineMetrics._rollback_finished,
    EventKind.RUN_FINISHED: EngineMetrics._finished,
}


@contextlib.contextmanager
def serving(metrics: EngineMetrics, host: str, port: int) -> Iterator[int]:
    """The metrics at ``http://host:port/metrics`` for the duration of the block (port 0: any free one)."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


PUSH_JOB = "sophia_release"
PUSH_TIMEOUT_S = 5.0
log = logging.getLogger(__name__)


@contextlib.contextmanager
def pushing(metrics: EngineMetrics, gateway: str, environment: str) -> Iterator[None]:
    """When the block ends (the command that executed the run is done), push the metrics to the Pushgateway at
    ``gateway``, replacing the group ``job=sophia_release, environment=…``; a gateway that cannot be reached is
    logged, never an error: the release does not depend on its monitoring."""
    try:
        yield
    finally:
        push(metrics, gateway, environment)


def push(metrics: EngineMetrics, gateway: str, environment: str) -> bool:
    """Push once; False (and a warning naming only the gateway's host) when it failed."""
    try:
        push_to_gateway(gateway, job=PUSH_JOB, registry=metrics.registry, grouping_key={"environment": environment},
                        timeout=PUSH_TIMEOUT_S)  # fmt: skip
    except Exception as exc:  # urllib raises several kinds (URLError, HTTPError, OSError, ValueError)
        host = urlsplit(gateway).hostname or "the Pushgateway"
        log.warning("engine metrics not pushed to %s: %s", host, type(exc).__name__)
        return False
    return True
