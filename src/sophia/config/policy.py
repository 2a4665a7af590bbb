"""A profile's policies: how the canary is stepped and judged, probed, loaded, baked, checked for readiness, leased and
timed (``profiles.<name>`` in ``sophia.yaml``)."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from sophia.config.fields import Model, Seconds, ServiceKind


class CanaryPolicy(Model):
    steps: list[Annotated[int, Field(ge=1, le=99)]] = Field(default_factory=lambda: [10], min_length=1)
    manual_gate: bool = False

    @field_validator("steps")
    @classmethod
    def _ascending(cls, steps: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("canary steps must be strictly ascending percentages below 100")
        return steps

    @property
    def weight(self) -> int:
        """The first canary weight (the guide's CANARY_PERCENTAGE)."""
        return self.steps[0]


class HealthPolicy(Model):
    interval_s: Seconds = 30.0
    timeout_s: Seconds = 10.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3


class AnalysisPolicy(Model):
    """How long each canary step is watched and what counts as a bad canary."""

    step_duration_s: Seconds = 120.0  # × max_step_extension must fit budgets.canary-deploy (Profile checks)
    interval_s: Seconds = 10.0
    # Latency is judged from this long after a step starts: a fresh canary's first requests are slow on their own
    # (connections to open, code to load). Errors are judged from the first request.
    warmup_s: Annotated[float, Field(ge=0)] = 30.0
    min_requests: Annotated[int, Field(ge=1)] = 50
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_p95_latency_ms: Seconds = 1000.0
    max_p99_latency_ms: Seconds = 2500.0
    # The sequential test (docs/analysis.md): the chance of rolling back a healthy canary, per service and metric;
    # the chance of passing a bad one; what "materially worse" means; and a second, severe-regression design that
    # catches a broken canary within a handful of requests.
    false_positive_rate: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    missed_regression_rate: Annotated[float, Field(gt=0, lt=0.5)] = 0.2
    relative_effect: Annotated[float, Field(gt=1)] = 2.0
    absolute_effect: Annotated[float, Field(ge=0, lt=1)] = 0.01
    severe_effect: Annotated[float, Field(gt=1)] = 30.0
    max_step_extension: Annotated[float, Field(ge=1)] = 2.0

    @model_validator(mode="after")
    def _warm_before_the_deadline(self) -> AnalysisPolicy:
        if self.warmup_s >= self.step_duration_s:
            raise ValueError("warmup_s must be shorter than step_duration_s")
        return self


class RequestSpec(Model):
    """One kind of request the load generator sends, and how often relative to the others."""

    method: Literal["GET", "POST", "PUT", "DELETE"] = "GET"
    path: Annotated[str, Field(pattern=r"^/")]
    body: dict[str, Any] | None = None
    weight: Annotated[int, Field(ge=1)] = 1


def _default_mix() -> dict[ServiceKind, list[RequestSpec]]:
    """What real callers of each kind of service do, in proportion."""
    version = RequestSpec(path="/version", weight=3)
    return {
        "generic": [
            RequestSpec(method="POST", path="/api/invoke", body={"tool": "summarise", "arguments": {"text": "q3"}},
                        weight=6),
            RequestSpec(path="/api/info", weight=3),
            RequestSpec(path="/version", weight=1),
        ],
        "comms": [
            RequestSpec(method="POST", path="/slack/post", weight=7,
                        body={"channel": "#sophia-loadgen", "message": "load test", "username": "sophia-loadgen"}),
            version,
        ],
        "crm": [
            RequestSpec(method="POST", path="/tasks/create", weight=7,
                        body={"subject": "Follow up", "description": "load test", "priority": "LOW",
                              "assignee": "loadgen@sophia.ai"}),
            version,
        ],
        "analytics": [
            RequestSpec(method="POST", path="/query/neon", body={"query": "SELECT 1 AS ok"}, weight=7),
            version,
        ],
    }  # fmt: skip


class TrafficPolicy(Model):
    """The built-in load generator that drives every router while the canary is analysed and baked.

    It runs for as long as a canary step (``analysis.step_duration_s``) or the bake (``rollout.bake_s``) lasts.
    """

    enabled: bool = True
    rps_per_service: Annotated[float, Field(gt=0, le=1000)] = 5.0
    timeout_s: Seconds = 10.0
    mix: dict[ServiceKind, list[RequestSpec]] = Field(default_factory=_default_mix)

    @field_validator("mix")
    @classmethod
    def _every_kind(cls, mix: dict[ServiceKind, list[RequestSpec]]) -> dict[ServiceKind, list[RequestSpec]]:
        return {**_default_mix(), **{kind: specs for kind, specs in mix.items() if specs}}


class SyntheticsPolicy(Model):
    timeout_s: Seconds = 15.0


class RolloutPolicy(Model):
    bake_s: Annotated[float, Field(ge=0)] = 60.0


class ReadinessPolicy(Model):
    """What readiness-check holds each service to beyond its health: resource limits, database pools, performance
    against the previous release, and the monitoring stack."""

    max_memory_mib: Annotated[float, Field(gt=0)] | None = None  # resident memory per workload; None: not checked
    max_cpu_percent: Annotated[float, Field(gt=0)] | None = None  # of one core, averaged since the workload started
    # Per-service limits that replace the two above for that service, e.g. {analytics-mcp: {max_memory_mib: 1024}}.
    service_limits: dict[str, dict[Literal["max_memory_mib", "max_cpu_percent"], Annotated[float, Field(gt=0)]]] = (
        Field(default_factory=dict)
    )
    # Health URLs of the monitoring stack that must answer 2xx, e.g. Prometheus' /-/ready, Grafana's /api/health.
    monitoring: list[str] = Field(default_factory=list)
    # Database pools (each service's ``sophia_db_pool_*`` gauges): exhausted (every connection lent out with
    # requests waiting) or more requests waiting than this fails readiness. ``check_pools: false`` skips the look.
    check_pools: bool = True
    max_pool_waiting: Annotated[int, Field(ge=0)] = 2
    # Performance against the previous release's baseline (p95 latency and error rate of each service's stable):
    # p95 over ``max_p95_ratio`` x the baseline's + ``p95_floor_ms``, or an error rate over the baseline's +
    # ``max_error_rate_increase`` (a fraction: 0.01 is one percentage point), fails readiness. A service with fewer
    # than ``min_requests`` requests on either side is not judged; ``max_p95_ratio: null`` judges the error rate only.
    max_p95_ratio: Annotated[float, Field(ge=1)] | None = 1.5
    p95_floor_ms: Annotated[float, Field(ge=0)] = 50.0
    max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] = 0.01
    min_requests: Annotated[int, Field(ge=1)] = 20


class SessionPolicy(Model):
    """The environment lease held by the process executing a run, and how often it looks for stop requests."""

    lease_ttl_s: Seconds = 30.0
    heartbeat_s: Seconds = 10.0
    request_poll_s: Seconds = 1.0

    @model_validator(mode="after")
    def _renew_in_time(self) -> SessionPolicy:
        if self.heartbeat_s >= self.lease_ttl_s:
            raise ValueError("heartbeat_s must be shorter than lease_ttl_s")
        return self


class Budgets(Model):
    """Wall-time budgets in seconds per stage and for the whole run; a stage without one is unbounded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    lint_test: Seconds | None = Field(default=None, alias="lint-test")
    build_cache: Seconds | None = Field(default=None, alias="build-cache")
    canary_deploy: Seconds | None = Field(default=300.0, alias="canary-deploy")
    migrate_neon: Seconds | None = Field(default=120.0, alias="migrate-neon")
    synthetics: Seconds | None = Field(default=60.0, alias="synthetics")
    full_rollout: Seconds | None = Field(default=600.0, alias="full-rollout")
    readiness_check: Seconds | None = Field(default=None, alias="readiness-check")
    total: Seconds = 1800.0

    def for_stage(self, stage: str) -> float | None:
        value: float | None = getattr(self, stage.replace("-", "_"))
        return value


class Profile(Model):
    canary: CanaryPolicy = CanaryPolicy()
    health: HealthPolicy = HealthPolicy()
    analysis: AnalysisPolicy = AnalysisPolicy()
    traffic: TrafficPolicy = TrafficPolicy()
    synthetics: SyntheticsPolicy = SyntheticsPolicy()
    rollout: RolloutPolicy = RolloutPolicy()
    readiness: ReadinessPolicy = ReadinessPolicy()
    session: SessionPolicy = SessionPolicy()
    budgets: Budgets = Budgets()

    @property
    def longest_canary_analysis_s(self) -> float:
        """The longest the canary's analysis may watch: every step extended as far as it may go."""
        return len(self.canary.steps) * self.analysis.step_duration_s * self.analysis.max_step_extension

    @model_validator(mode="after")
    def _analysis_fits_its_budget(self) -> Profile:
        budget = self.budgets.canary_deploy
        longest = self.longest_canary_analysis_s
        if budget is not None and longest > budget:
            raise ValueError(
                f"the canary analysis can last {longest:g}s ({len(self.canary.steps)} canary.steps × "
                f"analysis.step_duration_s {self.analysis.step_duration_s:g}s × analysis.max_step_extension "
                f"{self.analysis.max_step_extension:g}), longer than budgets.canary-deploy {budget:g}s: a slow but "
                "healthy canary would be rolled back by the budget; shorten the steps or raise the budget"
            )
        return self
