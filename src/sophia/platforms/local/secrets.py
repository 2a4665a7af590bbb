"""The local platform's secrets: ``.sophia/local/secrets.env`` (mode 0600), made at the first ``sophia local up``.

``SOPHIA_API_TOKEN`` is the bearer token every service wants and the engine's load generator and synthetic checks
send; ``SOPHIA_ANALYTICS_PASSWORD`` is the password of analytics-mcp's read-only role (``ops/sql/002``), which
``sophia local up`` gives the role. Both are kept across ``down``/``up``; delete the file to rotate them. The
file is written atomically and never readable by anyone else; its values go to the service processes through
their environment, never their command line. When ``local up`` was given a database of the services' own
(``DATABASE_URL``, or the Neon project's), the file keeps its DSN too (``DATABASE_URL``), until the next ``up``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from sophia.services.analytics_role import ANALYTICS_ROLE

FILE_NAME = "secrets.env"


@dataclass(frozen=True)
class LocalSecrets:
    api_token: str
    analytics_password: str

    def service_env(self, kind: str, database_url: str) -> dict[str, str]:
        """The secret part of a service's environment: analytics-mcp gets only its read-only role's DSN."""
        if kind == "analytics":
            analytics_url = make_conninfo(database_url, user=ANALYTICS_ROLE, password=self.analytics_password)
            return {"SOPHIA_API_TOKEN": self.api_token, "ANALYTICS_DATABASE_URL": analytics_url}
        return {"SOPHIA_API_TOKEN": self.api_token, "DATABASE_URL": database_url}


def path(home: Path) -> Path:
    return home / FILE_NAME


def _parse(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def _values(home: Path) -> dict[str, str]:
    try:
        return _parse(path(home).read_text())
    except FileNotFoundError:
        return {}


def load(home: Path) -> LocalSecrets | None:
    """The secrets, or None before the first ``sophia local up``."""
    values = _values(home)
    token, password = values.get("SOPHIA_API_TOKEN"), values.get("SOPHIA_ANALYTICS_PASSWORD")
    return LocalSecrets(token, password) if token and password else None


def _save(home: Path, made: LocalSecrets, database_url: str | None) -> None:
    values = {"SOPHIA_API_TOKEN": made.api_token, "SOPHIA_ANALYTICS_PASSWORD": made.analytics_password}
    _write(path(home), {**values, **({"DATABASE_URL": database_url} if database_url else {})})


def load_or_create(home: Path) -> LocalSecrets:
    existing = load(home)
    if existing is not None:
        return existing
    made = LocalSecrets(api_token=secrets.token_urlsafe(32), analytics_password=secrets.token_urlsafe(24))
    _save(home, made, None)
    return made


def load_database_url(home: Path) -> str | None:
    """The services' database ``local up`` was given; None when they use the embedded Postgres."""
    return _values(home).get("DATABASE_URL") or None


def record_database_url(home: Path, url: str | None) -> None:
    """Keep (or, with None, forget) the services' database for the platform being started."""
    _save(home, load_or_create(home), url)


def _write(target: Path, values: Mapping[str, str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".partial")
    text = "# Made by `sophia local up`; delete this file to rotate the secrets.\n"
    text += "".join(f"{name}={value}\n" for name, value in values.items())
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(staging, 0o600)
    staging.replace(target)


def service_env(home: Path, kind: str, database_url: str) -> dict[str, str]:
    """``LocalSecrets.service_env`` of this platform's secrets (made now if ``local up`` has not yet)."""
    return load_or_create(home).service_env(kind, database_url)
