"""Reading the configuration: ``sophia.yaml``, a running rehearsal's endpoints, the deployment guide's environment
variables and explicit overrides, merged in that order and validated as one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from sophia.config.fields import ConfigError
from sophia.config.settings import Settings

DEFAULT_CONFIG_FILE = "sophia.yaml"


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
