"""The whole configuration as ``sophia.yaml`` writes it, checked as one: services, profiles, platforms, stores."""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field, SecretStr, model_validator

from sophia.config.fields import ConfigError, Model, PlatformName, ServiceSpec
from sophia.config.policy import Profile
from sophia.config.sections import (
    KubernetesPlatformConfig,
    LintTestConfig,
    LocalPlatformConfig,
    MetricsConfig,
    NeonConfig,
    NotifyConfig,
    RehearsalConfig,
    ReleaseConfig,
)


class Settings(Model):
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
