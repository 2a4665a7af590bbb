"""What one service process is: its name and kind, the release it belongs to, and what it may talk to.

Everything except the service name and kind comes from the environment, which is how the local platform (and a
Kubernetes Deployment) configures a service version. Secrets (marked *) are never logged or returned.

==========================  =============================================================================
``SOPHIA_VERSION``          release version, e.g. ``v1.1.0``
``SOPHIA_TRACK``            ``stable`` or ``canary``
``SOPHIA_GIT_SHA``          commit the release was built from
``SOPHIA_ARTIFACT``         content hash of the built artifact
``SOPHIA_API_TOKEN`` *      required: every endpoint but ``/health``, ``/ready`` and ``/metrics`` wants
                            ``Authorization: Bearer <token>`` (at least 24 characters)
``DATABASE_URL`` *          Postgres DSN of the service's own data (sandbox outbox, audit trail)
``ANALYTICS_DATABASE_URL``  * analytics-mcp only: DSN of its read-only LOGIN role (``ops/sql/002``)
``ANALYTICS_SCHEMAS``       schemas analytics-mcp may read (default ``public,audit``)
``ANALYTICS_TIMEOUT_MS``    analytics-mcp's statement timeout (default 5000)
``SOPHIA_FAULTS``           rehearsal faults, e.g. ``error_rate=0.5,latency_ms=200,crash=1`` (empty = none)
``SOPHIA_BACKEND``          ``auto`` (default): the real Slack / HubSpot when its token is set, else the
                            sandbox outbox; ``sandbox``: always the outbox
``SLACK_BOT_TOKEN`` *       comms-mcp: post with ``chat.postMessage`` as this bot
``SLACK_WEBHOOK_URL`` *     comms-mcp: post through this incoming webhook (when there is no bot token)
``SLACK_API_URL``           Slack Web API base URL (default ``https://slack.com/api/``)
``HUBSPOT_ACCESS_TOKEN`` *  crm-mcp: create tasks in HubSpot with this private-app token
``HUBSPOT_API_URL``         HubSpot API host (default ``https://api.hubapi.com``)
``SOPHIA_MCP_HOSTS``        extra ``Host`` values the MCP endpoint accepts, comma-separated (``host:*``)
``SOPHIA_SHUTDOWN_S``       how long a stopping service lets in-flight requests finish (default 10)
==========================  =============================================================================
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sophia.services.faults import Faults, parse_faults
from sophia.services.redact import dsn_secrets

ServiceKind = Literal["generic", "comms", "crm", "analytics"]
Track = Literal["stable", "canary"]
BackendChoice = Literal["auto", "sandbox"]
MIN_TOKEN_LENGTH = 24
# How long a service keeps an idle keep-alive connection open: longer than any client in front of it pools one
# (httpx and the local router: 5 s; Istio's sidecar: the DestinationRule's idleTimeout), so no client ever sends a
# request on a connection the service is closing at that very moment — that request would fail with no answer.
KEEP_ALIVE_S = 75

SERVICE_KINDS: dict[str, ServiceKind] = {
    "mcp-research": "generic",
    "mcp-context": "generic",
    "mcp-agents": "generic",
    "mcp-business": "generic",
    "comms-mcp": "comms",
    "crm-mcp": "crm",
    "analytics-mcp": "analytics",
    "sophia-dashboard": "generic",
    "sophia-business": "generic",
    "sophia-hubspot": "generic",
    "sophia-github": "generic",
    "sophia-lambda": "generic",
}
"""The twelve Sophia services and the kind each one is built as."""

_VERSION = re.compile(r"^v\d+\.\d+\.\d+(?:-[0-9A-Za-z][0-9A-Za-z.-]*)?$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_OPTIONAL_SECRETS = (
    "database_url", "analytics_database_url", "slack_bot_token", "slack_webhook_url", "hubspot_access_token",
)  # fmt: skip


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class ServiceSettings(BaseSettings):
    """Settings of one service process; ``service`` and ``kind`` usually come from the command line."""

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, populate_by_name=True, env_prefix=""
    )

    service: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,40}$", validation_alias="SOPHIA_SERVICE")] = (
        "mcp-research"
    )
    kind: Annotated[ServiceKind, Field(validation_alias="SOPHIA_SERVICE_KIND")] = "generic"
    version: Annotated[str, Field(validation_alias="SOPHIA_VERSION")] = "v0.0.0"
    track: Annotated[Track, Field(validation_alias="SOPHIA_TRACK")] = "stable"
    git_sha: Annotated[str, Field(max_length=64, validation_alias="SOPHIA_GIT_SHA")] = "unknown"
    artifact: Annotated[str, Field(max_length=128, validation_alias="SOPHIA_ARTIFACT")] = "unknown"
    api_token: Annotated[SecretStr, Field(validation_alias="SOPHIA_API_TOKEN")]
    database_url: Annotated[SecretStr | None, Field(validation_alias="DATABASE_URL")] = None
    analytics_database_url: Annotated[SecretStr | None, Field(validation_alias="ANALYTICS_DATABASE_URL")] = None
    analytics_schemas: Annotated[tuple[str, ...], NoDecode, Field(validation_alias="ANALYTICS_SCHEMAS")] = (
        "public",
        "audit",
    )
    analytics_timeout_ms: Annotated[int, Field(ge=100, le=60_000, validation_alias="ANALYTICS_TIMEOUT_MS")] = 5000
    faults: Annotated[Faults, NoDecode, Field(validation_alias="SOPHIA_FAULTS")] = Faults()
    backend: Annotated[BackendChoice, Field(validation_alias="SOPHIA_BACKEND")] = "auto"
    slack_bot_token: Annotated[SecretStr | None, Field(validation_alias="SLACK_BOT_TOKEN")] = None
    slack_webhook_url: Annotated[SecretStr | None, Field(validation_alias="SLACK_WEBHOOK_URL")] = None
    slack_api_url: Annotated[AnyHttpUrl, Field(validation_alias="SLACK_API_URL")] = AnyHttpUrl("https://slack.com/api/")
    hubspot_access_token: Annotated[SecretStr | None, Field(validation_alias="HUBSPOT_ACCESS_TOKEN")] = None
    hubspot_api_url: Annotated[AnyHttpUrl, Field(validation_alias="HUBSPOT_API_URL")] = AnyHttpUrl(
        "https://api.hubapi.com"
    )
    mcp_hosts: Annotated[tuple[str, ...], NoDecode, Field(validation_alias="SOPHIA_MCP_HOSTS")] = ()
    shutdown_s: Annotated[float, Field(gt=0, le=300, validation_alias="SOPHIA_SHUTDOWN_S")] = 10.0

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError(f"malformed version {value!r}: expected vMAJOR.MINOR.PATCH, e.g. v1.2.0")
        return value

    @field_validator("api_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters (e.g. secrets.token_urlsafe(32))")
        return value

    @field_validator("faults", mode="before")
    @classmethod
    def _faults(cls, value: Any) -> Any:
        return parse_faults(value) if isinstance(value, str) else value

    @field_validator(*_OPTIONAL_SECRETS, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("analytics_schemas", "mcp_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("analytics_schemas")
    @classmethod
    def _schema_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in value if not _SCHEMA.match(name) or name.startswith("pg_")]
        if bad or not value:
            raise ValueError(f"schema names must be plain lower-case identifiers (not pg_*), got {bad or 'none'}")
        return value

    @property
    def dsn(self) -> str | None:
        """The database DSN in clear text, for the driver only."""
        return _reveal(self.database_url)

    @property
    def analytics_dsn(self) -> str | None:
        """The analytics role's DSN in clear text, for the driver only."""
        return _reveal(self.analytics_database_url)

    @property
    def token(self) -> str:
        return self.api_token.get_secret_value()

    @property
    def secrets(self) -> list[str]:
        """Strings that must never appear in a response or a log line (see ``sophia.services.redact``)."""
        found = [self.token]
        for dsn in (self.dsn, self.analytics_dsn):
            found += dsn_secrets(dsn) if dsn else []
        for name in ("slack_bot_token", "slack_webhook_url", "hubspot_access_token"):
            value = _reveal(getattr(self, name))
            found += [value] if value else []
        return found


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret else None
