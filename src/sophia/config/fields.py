"""The configuration's building blocks: the stage names, checked value types, the strict model base, the error."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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

ServiceKind = Literal["generic", "comms", "crm", "analytics"]
Seconds = Annotated[float, Field(gt=0)]


class ConfigError(ValueError):
    """Invalid configuration; the message is meant for the user and names the offending field."""


class Model(BaseModel):
    """A section of the configuration: unknown keys are refused, values never change once read."""

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


class ServiceSpec(Model):
    name: Annotated[str, Field(pattern=SERVICE_NAME_PATTERN)]
    kind: ServiceKind = "generic"
