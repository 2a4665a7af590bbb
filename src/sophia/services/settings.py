"""What one service process is: its name and kind, the release it belongs to, and what it may talk to.

Everything except the service name and kind comes from the environment, which is how the local platform (and a
Kubernetes Deployment) configures a service version:

=====================  ==================================================================================
``SOPHIA_VERSION``     release version, e.g. ``v1.1.0``
``SOPHIA_TRACK``       ``stable`` or ``canary``
``SOPHIA_GIT_SHA``     commit the release was built from
``SOPHIA_ARTIFACT``    content hash of the built artifact
``DATABASE_URL``       Postgres DSN (a secret: it is never logged or returned)
``SOPHIA_FAULTS``      rehearsal faults, e.g. ``error_rate=0.5,latency_ms=200,crash=1`` (empty = none)
``SOPHIA_BACKEND``     ``sandbox`` (default): Slack messages and CRM tasks land in ``sandbox.outbox``
``SOPHIA_API_TOKEN``   when set, business endpoints require ``Authorization: Bearer <token>``
=====================  ==================================================================================
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sophia.services.faults import Faults, parse_faults
from sophia.services.redact import dsn_secrets

ServiceKind = Literal["generic", "comms", "crm", "analytics"]
Track = Literal["stable", "canary"]
BackendName = Literal["sandbox"]

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
    database_url: Annotated[SecretStr | None, Field(validation_alias="DATABASE_URL")] = None
    faults: Annotated[Faults, NoDecode, Field(validation_alias="SOPHIA_FAULTS")] = Faults()
    backend: Annotated[BackendName, Field(validation_alias="SOPHIA_BACKEND")] = "sandbox"
    api_token: Annotated[SecretStr | None, Field(validation_alias="SOPHIA_API_TOKEN")] = None

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError(f"malformed version {value!r}: expected vMAJOR.MINOR.PATCH, e.g. v1.2.0")
        return value

    @field_validator("faults", mode="before")
    @classmethod
    def _faults(cls, value: Any) -> Any:
        return parse_faults(value) if isinstance(value, str) else value

    @field_validator("database_url", "api_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def dsn(self) -> str | None:
        """The database DSN in clear text, for the driver only."""
        return self.database_url.get_secret_value() if self.database_url else None

    @property
    def secrets(self) -> list[str]:
        """Strings that must never appear in a response or a log line (see ``sophia.services.redact``)."""
        found = dsn_secrets(self.dsn) if self.dsn else []
        if self.api_token:
            found.append(self.api_token.get_secret_value())
        return found
