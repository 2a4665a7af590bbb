"""The configuration's sections beside the profiles: each platform, the release and its images, lint-test, Neon,
the metrics sources and the notification channels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from sophia.config.fields import HttpUrl, Model, Port, Seconds, Version


class LocalPlatformConfig(Model):
    """The local platform: embedded Postgres, a router daemon with one listener per service, local processes."""

    postgres_port: Port = 55432
    router_admin_port: Port = 18900
    # Each service's router listens on ``router_ports[name]``, else on ``router_port_base`` + its position.
    router_port_base: Port = 18001
    router_ports: dict[str, Port] = Field(default_factory=dict)
    baseline_version: Version = "v1.0.0"
    startup_timeout_s: Seconds = 30.0


class GatewayConfig(Model):
    """The mesh's ingress gateway, through which the engine reaches services (probes, load, synthetics)."""

    url: str | None = None  # e.g. https://gateway.example.com; without it probes read pod readiness instead
    name: str = "sophia-gateway"  # the Istio Gateway (in the stable namespace) the VirtualServices bind
    domain: str = "sophia.internal"  # each service is reached as NAME.<domain> through the gateway


class RehearsalConfig(Model):
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


class ResourcesConfig(Model):
    """Requests and limits of every service container (Kubernetes quantities)."""

    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    cpu_limit: str = "1"
    memory_limit: str = "256Mi"


class KubernetesPlatformConfig(Model):
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


class LintTestConfig(Model):
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


class ImageConfig(Model):
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


class ReleaseConfig(Model):
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


class NeonConfig(Model):
    project_id: str = "rough-union-72390895"
    endpoint_id: str = "ep-rough-dew-af6w48m3"
    user: str = "neondb_owner"
    database: str = "neondb"
    region: str = "us-east-1"
    api_key: SecretStr | None = None
    api_url: str = "https://console.neon.tech/api/v2"
    ssl_root_cert: str | None = None  # CA bundle for sslmode=verify-full (else PGSSLROOTCERT, else require)


class MetricsConfig(Model):
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


class NotifyConfig(Model):
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
