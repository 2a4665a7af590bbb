"""Configuration: ``sophia.yaml`` plus the deployment guide's environment variables, validated by pydantic.

Precedence, lowest first: the model defaults (the guide's production numbers), ``sophia.yaml``, environment
variables. A bad value anywhere becomes a ``ConfigError`` whose message names the field or variable; the CLI turns
it into exit code 2 before anything is started or changed.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

STAGE_NAMES: tuple[str, ...] = (
    "lint-test",
    "build-cache",
    "canary-deploy",
    "migrate-neon",
    "synthetics",
    "full-rollout",
    "readiness-check",
)

VERSION_PATTERN = re.compile(r"^v\d+\.\d+\.\d+(?:-[0-9A-Za-z][0-9A-Za-z.-]*)?$")
SERVICE_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,40}$"

DEFAULT_CONFIG_FILE = "sophia.yaml"

ServiceKind = Literal["generic", "comms", "crm", "analytics"]
Seconds = Annotated[float, Field(gt=0)]


class ConfigError(ValueError):
    """Invalid configuration; the message is meant for the user and names the offending field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_version(version: str) -> str:
    """Release versions look like ``v1.2.3`` or ``v1.2.3-rc.1``."""
    if not VERSION_PATTERN.match(version):
        raise ConfigError(f"malformed version {version!r}: expected vMAJOR.MINOR.PATCH, e.g. v1.2.0")
    return version


Version = Annotated[str, AfterValidator(check_version)]


def _http_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"expected an http(s) URL, e.g. http://127.0.0.1:9091, not {url!r}")
    return url


HttpUrl = Annotated[str, AfterValidator(_http_url)]


Port = Annotated[int, Field(ge=1024, le=65535)]
PlatformName = Literal["local", "kubernetes"]
PLATFORM_NAMES: tuple[str, ...] = ("local", "kubernetes")


class ServiceSpec(_Model):
    name: Annotated[str, Field(pattern=SERVICE_NAME_PATTERN)]
    kind: ServiceKind = "generic"


class CanaryPolicy(_Model):
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


class HealthPolicy(_Model):
    interval_s: Seconds = 30.0
    timeout_s: Seconds = 10.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3


class AnalysisPolicy(_Model):
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


class RequestSpec(_Model):
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


class TrafficPolicy(_Model):
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


class SyntheticsPolicy(_Model):
    timeout_s: Seconds = 15.0


class RolloutPolicy(_Model):
    bake_s: Annotated[float, Field(ge=0)] = 60.0


class ReadinessPolicy(_Model):
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


class SessionPolicy(_Model):
    """The environment lease held by the process executing a run, and how often it looks for stop requests."""

    lease_ttl_s: Seconds = 30.0
    heartbeat_s: Seconds = 10.0
    request_poll_s: Seconds = 1.0

    @model_validator(mode="after")
    def _renew_in_time(self) -> SessionPolicy:
        if self.heartbeat_s >= self.lease_ttl_s:
            raise ValueError("heartbeat_s must be shorter than lease_ttl_s")
        return self


class Budgets(_Model):
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


class Profile(_Model):
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


class LocalPlatformConfig(_Model):
    """The local platform: embedded Postgres, a router daemon with one listener per service, local processes."""

    postgres_port: Port = 55432
    router_admin_port: Port = 18900
    # Each service's router listens on ``router_ports[name]``, else on ``router_port_base`` + its position.
    router_port_base: Port = 18001
    router_ports: dict[str, Port] = Field(default_factory=dict)
    baseline_version: Version = "v1.0.0"
    startup_timeout_s: Seconds = 30.0


class GatewayConfig(_Model):
    """The mesh's ingress gateway, through which the engine reaches services (probes, load, synthetics)."""

    url: str | None = None  # e.g. https://gateway.example.com; without it probes read pod readiness instead
    name: str = "sophia-gateway"  # the Istio Gateway (in the stable namespace) the VirtualServices bind
    domain: str = "sophia.internal"  # each service is reached as NAME.<domain> through the gateway


class RehearsalConfig(_Model):
    """The Kubernetes rehearsal on this machine (``sophia rehearse up``): a real control plane, kubelet, mesh and
    metrics-server stand-ins, Prometheus and an embedded Postgres, on these loopback ports."""

    apiserver_port: Port = 16443
    etcd_port: Port = 12379
    etcd_peer_port: Port = 12380
    router_admin_port: Port = 19900
    gateway_port: Port = 19080
    router_port_base: Port = 19001
    prometheus_port: Port = 19090
    postgres_port: Port = 55433
    metrics_api_port: Port = 19443  # the metrics-server stand-in, behind the apiserver's aggregation layer
    baseline_version: Version = "v1.0.0"
    startup_timeout_s: Seconds = 120.0


class ResourcesConfig(_Model):
    """Requests and limits of every service container (Kubernetes quantities)."""

    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    cpu_limit: str = "1"
    memory_limit: str = "256Mi"


class KubernetesPlatformConfig(_Model):
    """Kubernetes + Istio: stable Deployments in ``namespace``, canaries in ``canary_namespace``."""

    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)] = "sophia"
    canary_namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)] = "sophia-canary"
    # Credentials, first found wins: KUBE_CONFIG (base64 kubeconfig, the guide's secret), ``kubeconfig`` (a file),
    # $KUBECONFIG, ~/.kube/config, then the in-cluster service account.
    kubeconfig: Path | None = None
    context: str | None = None
    gateway: GatewayConfig = GatewayConfig()
    pin_header: str = "x-sophia-route"  # a request with ``<pin_header>: canary`` reaches the canary only
    replicas: Annotated[int, Field(ge=1, le=100)] = 2
    canary_replicas: Annotated[int, Field(ge=1, le=100)] = 1
    progress_deadline_s: Annotated[int, Field(ge=1, le=3600)] = 120  # a rollout stalled this long has failed
    poll_s: Seconds = 1.0  # how often a rollout's status is read while waiting for it
    request_timeout_s: Seconds = 10.0
    max_conflict_retries: Annotated[int, Field(ge=1, le=20)] = 5
    container_port: Port = 8080  # every service's container listens here; its Services on port 80
    resources: ResourcesConfig = ResourcesConfig()
    # Secrets the services read (by reference, never inlined): their database (key ``url``), analytics-mcp's
    # read-only role (key ``url``), their bearer token (key ``token``), and, optional, Slack (``bot-token``,
    # ``webhook-url``) and HubSpot (``access-token``).
    # (S105: these are the Secrets' names, not their values)
    database_secret: str = "sophia-database"  # noqa: S105
    analytics_database_secret: str = "sophia-analytics-database"  # noqa: S105
    token_secret: str = "sophia-api-token"  # noqa: S105
    slack_secret: str = "sophia-slack"  # noqa: S105
    hubspot_secret: str = "sophia-hubspot"  # noqa: S105
    mesh_namespace: str = "istio-system"  # where the ingress gateway and istiod run (NetworkPolicies allow it)

    @model_validator(mode="after")
    def _two_namespaces(self) -> KubernetesPlatformConfig:
        if self.namespace == self.canary_namespace:
            raise ValueError("namespace and canary_namespace must differ")
        return self


class LintTestConfig(_Model):
    commands: list[list[str]] = Field(
        default_factory=lambda: [
            ["ruff", "check", "."],
            ["pytest", "-q", "--cov=sophia", "--cov-report=term", "--cov-report=xml:.sophia/coverage.xml"],
        ],
    )
    timeout_s: Seconds = 900.0
    # The Cobertura XML the test command writes (pytest-cov's --cov-report=xml:PATH), read after the commands pass;
    # relative to source_dir. With a floor, a total line coverage below it fails the stage.
    coverage_xml: Path | None = Path(".sophia/coverage.xml")
    coverage_floor: Annotated[float, Field(ge=0, le=100)] | None = None


class ImageConfig(_Model):
    """How build-cache makes container images (``release.builder``: ``image``, ``buildx`` or ``buildah``)."""

    dockerfile: Path = Path("Dockerfile")  # relative to source_dir; the build context is source_dir
    base: str | None = None  # the Dockerfile's BASE (default: its pinned base); a local one where no registry is
    platforms: list[str] = Field(default_factory=lambda: ["linux/amd64", "linux/arm64"])  # buildx only
    push: bool | None = None  # default: buildx pushes to the registry, buildah keeps images local
    cache_tag: str = "buildcache"  # buildx's registry cache: REGISTRY/OWNER/sophia-SERVICE:<cache_tag>
    branch: str | None = None  # GITHUB_REF_NAME: the branch tag
    source_url: str = "https://github.com/sophia-ai/sophia-release"  # GITHUB_SERVER_URL/GITHUB_REPOSITORY
    username: str | None = None  # the registry login (GITHUB_ACTOR); default: release.owner
    services: list[str] | None = None  # build only these (default: every service)
    scan: bool = True  # SBOM and vulnerability scans after the build


class ReleaseConfig(_Model):
    version: Version = "v1.1.0"
    registry: str = "ghcr.io"  # REGISTRY
    # What build-cache makes: a wheel (the local platform) or images; "rehearsal" publishes the wheel to the
    # rehearsal's registry and names an image per service by its digest. Default: by platform.
    # "image" builds container images with docker buildx when it is installed, else buildah; "buildx" and
    # "buildah" pick one (release.images configures them).
    builder: Literal["wheel", "rehearsal", "image", "buildx", "buildah"] | None = None
    owner: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")] = "sophia-ai"  # GITHUB_REPOSITORY_OWNER
    images: ImageConfig = ImageConfig()

    def image_repository(self, service: str) -> str:
        """Where ``service``'s images live: ``REGISTRY/OWNER/sophia-SERVICE``."""
        return f"{self.registry.rstrip('/')}/{self.owner}/sophia-{service}"


class NeonConfig(_Model):
    project_id: str = "rough-union-72390895"
    endpoint_id: str = "ep-rough-dew-af6w48m3"
    user: str = "neondb_owner"
    database: str = "neondb"
    region: str = "us-east-1"
    api_key: SecretStr | None = None
    api_url: str = "https://console.neon.tech/api/v2"
    ssl_root_cert: str | None = None  # CA bundle for sslmode=verify-full (else PGSSLROOTCERT, else require)


class MetricsConfig(_Model):
    """Where canary metrics come from: the local routers' own tallies, an Istio-style exposition endpoint scraped
    directly, or Prometheus over Istio's metrics."""

    source: Literal["router", "exposition", "prometheus"] | None = None  # default: router locally, else prometheus
    prometheus_url: str = "http://127.0.0.1:9090"
    exposition_url: str | None = None  # default: the local router daemon's /metrics
    timeout_s: Seconds = 5.0
    # The engine's own metrics (runs, stages, rollback, canary weight and verdict, notifications) for Prometheus,
    # served on engine_host:engine_port while a command executes a run; None: not served (docs/metrics.md).
    engine_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    engine_host: str = "127.0.0.1"
    # A Prometheus Pushgateway (e.g. http://pushgateway:9091) the engine pushes its metrics to when each command that
    # executes a run ends — for CI jobs that end before a scrape; None: not pushed.
    pushgateway_url: HttpUrl | None = None


class NotifyConfig(_Model):
    slack_webhook_url: SecretStr | None = None
    pagerduty_integration_key: SecretStr | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    email_from: str = "sophia-release@localhost"
    email_to: list[str] = Field(default_factory=list)
    report_base_url: str | None = None
    timeout_s: Seconds = 5.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 4


class Settings(_Model):
    """The whole configuration as written in ``sophia.yaml`` (before the active profile is chosen)."""

    platform: PlatformName = "local"  # where services run
    profile: str = "production"
    release: ReleaseConfig = ReleaseConfig()
    services: list[ServiceSpec] = Field(min_length=1)
    profiles: dict[str, Profile] = Field(default_factory=lambda: {"production": Profile()})
    local: LocalPlatformConfig = LocalPlatformConfig()
    kubernetes: KubernetesPlatformConfig = KubernetesPlatformConfig()
    rehearsal: RehearsalConfig = RehearsalConfig()
    lint_test: LintTestConfig = Field(default_factory=LintTestConfig, alias="lint-test")
    # Relative paths are read from the configuration file's folder (migrations_dir from source_dir).
    source_dir: Path = Path(".")  # the checkout being released (built by build-cache, linted by lint-test)
    migrations_dir: Path = Path("ops/sql")
    state_dir: Path = Path(".sophia")
    database_url: SecretStr | None = None
    # Where runs, their events and the environment lease are kept (default: the database the pipeline migrates).
    state_database_url: SecretStr | None = None
    environment: str | None = None  # the lease's name: one active run per environment (default: the platform)
    neon: NeonConfig = NeonConfig()
    notify: NotifyConfig = NotifyConfig()
    metrics: MetricsConfig = MetricsConfig()
    github_token: SecretStr | None = None
    kube_config: SecretStr | None = None
    api_token: SecretStr | None = None  # the services' bearer token (SOPHIA_API_TOKEN); locally made by `local up`

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        names = [s.name for s in self.services]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate service names: {', '.join(duplicates)}")
        strangers = sorted(set(self.local.router_ports) - set(names))
        if strangers:
            raise ValueError(f"local.router_ports names unknown services: {', '.join(strangers)}")
        ports = [*self.router_ports.values(), self.local.postgres_port, self.local.router_admin_port]
        clashing = sorted({p for p in ports if ports.count(p) > 1})
        if clashing:
            raise ValueError(f"ports used twice: {', '.join(map(str, clashing))}")
        if self.platform == "kubernetes" and self.metrics.source == "router":
            raise ValueError("metrics.source: the router source exists on the local platform only; use prometheus")
        if self.profile not in self.profiles:
            raise ValueError(f"profile {self.profile!r} is not defined (known: {', '.join(sorted(self.profiles))})")
        return self

    @property
    def environment_name(self) -> str:
        return self.environment or self.platform

    @property
    def router_ports(self) -> dict[str, int]:
        """The local router's listening port for each service."""
        local = self.local
        return {s.name: local.router_ports.get(s.name, local.router_port_base + i) for i, s in enumerate(self.services)}

    @property
    def metrics_source(self) -> str:
        return self.metrics.source or ("router" if self.platform == "local" else "prometheus")

    @property
    def policy(self) -> Profile:
        """The active profile's policies."""
        return self.profiles[self.profile]

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise ConfigError(f"unknown service {name!r} (known: {', '.join(s.name for s in self.services)})")

    @property
    def service_names(self) -> list[str]:
        return [s.name for s in self.services]


class SeedEnvironment(BaseSettings):
    """The environment variables named in the deployment guide (plus a few of our own), all optional."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_prefix="")

    CANARY_PERCENTAGE: Annotated[int, Field(ge=1, le=99)] | None = None
    PRODUCTION_TAG: str | None = None
    REGISTRY: str | None = None
    GITHUB_REPOSITORY_OWNER: str | None = None
    GITHUB_REF_NAME: str | None = None
    GITHUB_ACTOR: str | None = None
    GITHUB_SERVER_URL: str | None = None
    GITHUB_REPOSITORY: str | None = None
    NEON_PROJECT_ID: str | None = None
    NEON_ENDPOINT_ID: str | None = None
    NEON_USER: str | None = None
    NEON_DB: str | None = None
    NEON_API_KEY: SecretStr | None = None
    KUBE_CONFIG: SecretStr | None = None
    GITHUB_TOKEN: SecretStr | None = None
    SLACK_WEBHOOK_URL: SecretStr | None = None
    PAGERDUTY_INTEGRATION_KEY: SecretStr | None = None
    SMTP_HOST: str | None = None
    SMTP_PORT: int | None = None
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: SecretStr | None = None
    EMAIL_TO: str | None = None
    DATABASE_URL: SecretStr | None = None
    SOPHIA_STATE_URL: SecretStr | None = None
    SOPHIA_PROFILE: str | None = None
    SOPHIA_PLATFORM: str | None = None
    SOPHIA_BUILDER: str | None = None
    SOPHIA_API_TOKEN: SecretStr | None = None


def _env_overrides(env: SeedEnvironment) -> dict[str, Any]:
    """Map the flat environment variables onto the nested settings tree."""
    tree: dict[str, Any] = {}

    def put(path: str, value: Any) -> None:
        if value is None:
            return
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value.get_secret_value() if isinstance(value, SecretStr) else value

    put("release.version", env.PRODUCTION_TAG)
    put("release.registry", env.REGISTRY)
    put("release.owner", env.GITHUB_REPOSITORY_OWNER.lower() if env.GITHUB_REPOSITORY_OWNER else None)
    put("release.images.branch", env.GITHUB_REF_NAME)
    put("release.images.username", env.GITHUB_ACTOR)
    if env.GITHUB_SERVER_URL and env.GITHUB_REPOSITORY:
        put("release.images.source_url", f"{env.GITHUB_SERVER_URL.rstrip('/')}/{env.GITHUB_REPOSITORY}")
    put("neon.project_id", env.NEON_PROJECT_ID)
    put("neon.endpoint_id", env.NEON_ENDPOINT_ID)
    put("neon.user", env.NEON_USER)
    put("neon.database", env.NEON_DB)
    put("neon.api_key", env.NEON_API_KEY)
    put("kube_config", env.KUBE_CONFIG)
    put("github_token", env.GITHUB_TOKEN)
    put("notify.slack_webhook_url", env.SLACK_WEBHOOK_URL)
    put("notify.pagerduty_integration_key", env.PAGERDUTY_INTEGRATION_KEY)
    put("notify.smtp_host", env.SMTP_HOST)
    put("notify.smtp_port", env.SMTP_PORT)
    put("notify.smtp_username", env.SMTP_USERNAME)
    put("notify.smtp_password", env.SMTP_PASSWORD)
    if env.EMAIL_TO:
        put("notify.email_to", [a.strip() for a in env.EMAIL_TO.split(",") if a.strip()])
    put("database_url", env.DATABASE_URL)
    put("state_database_url", env.SOPHIA_STATE_URL)
    put("profile", env.SOPHIA_PROFILE)
    put("platform", env.SOPHIA_PLATFORM)
    put("release.builder", env.SOPHIA_BUILDER)
    put("api_token", env.SOPHIA_API_TOKEN)
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _apply_canary_percentage(settings: Settings, percentage: int | None) -> Settings:
    """CANARY_PERCENTAGE replaces the first canary step of every profile (later steps must stay above it)."""
    if percentage is None:
        return settings
    profiles = {}
    for name, profile in settings.profiles.items():
        steps = [percentage, *[s for s in profile.canary.steps[1:] if s > percentage]]
        canary = profile.canary.model_copy(update={"steps": steps})
        profiles[name] = profile.model_copy(update={"canary": canary})
    return settings.model_copy(update={"profiles": profiles})


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {where}: {first['msg']}{more}"


def load_config(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read ``sophia.yaml`` (or ``path``), apply the environment and explicit overrides, validate."""
    environ = dict(os.environ if env is None else env)
    config_path = Path(path or environ.get("SOPHIA_CONFIG") or DEFAULT_CONFIG_FILE)
    try:
        raw_text = config_path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {config_path}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(raw_text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path}: expected a mapping at the top level")
    try:
        seed_env = SeedEnvironment.model_validate(
            {k: v for k, v in environ.items() if k in SeedEnvironment.model_fields}
        )
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "environment")) from exc
    env_tree, explicit = _env_overrides(seed_env), overrides or {}
    rehearsal = _rehearsal(_merge(_merge(raw, env_tree), explicit), config_path)
    merged = _merge(_merge(_merge(raw, rehearsal), env_tree), explicit)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(config_path))) from exc
    return _anchor_paths(_apply_canary_percentage(settings, seed_env.CANARY_PERCENTAGE), config_path.parent)


REHEARSAL_ENDPOINTS = Path("rehearsal") / "endpoints.yaml"


def _rehearsal(chosen: Mapping[str, Any], config_path: Path) -> dict[str, Any]:
    """While a rehearsal is up, ``--platform kubernetes`` uses its endpoints (kubeconfig, gateway, Prometheus,
    database, registry), recorded by ``sophia rehearse up`` in ``<state_dir>/rehearsal/endpoints.yaml``; the
    environment and the command line still win over them, the file's own values do not."""
    if chosen.get("platform") != "kubernetes":
        return {}
    state_dir = Path(str(chosen.get("state_dir") or ".sophia"))
    path = (config_path.parent / state_dir / REHEARSAL_ENDPOINTS).absolute()
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _anchor_paths(settings: Settings, folder: Path) -> Settings:
    """Make the file's relative paths absolute, so commands behave the same from any working directory."""
    source = (folder / settings.source_dir).resolve()
    return settings.model_copy(
        update={
            "source_dir": source,
            "migrations_dir": (source / settings.migrations_dir).resolve(),
            "state_dir": (folder / settings.state_dir).absolute(),
        }
    )
