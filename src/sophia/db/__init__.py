"""Database migrations for the migrate-neon stage, the Neon connection and API, backups, and the audit trail.

The one entry point for the composition root is :func:`create_migrator`. This package imports only
``sophia.config`` and ``sophia.engine`` from the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from sophia.config import Settings
from sophia.db.audit import AUDIT_SCHEMA, append_audit_event, append_audit_event_sync, verify_audit_chain
from sophia.db.errors import ConnectError, LockNotObtained, MigrationFailed, MigrationRefused
from sophia.db.migrator import (
    DatabaseSource,
    MigrationReport,
    MigratorOptions,
    NeonSource,
    NoSource,
    SqlMigrator,
    UrlSource,
)
from sophia.db.neon_api import NeonApi
from sophia.db.runner import RunnerOptions
from sophia.db.squawk import Finding, lint_migrations
from sophia.engine.clock import Clock, SystemClock


def database_source(settings: Settings, clock: Clock, *, database_url: str | None = None) -> DatabaseSource:
    """``database_url`` > ``DATABASE_URL`` (settings) > the Neon API with ``NEON_API_KEY`` > nothing (refused)."""
    neon = settings.neon
    ssl_root_cert = neon.ssl_root_cert or os.environ.get("PGSSLROOTCERT") or None
    url = database_url or (settings.database_url.get_secret_value() if settings.database_url else None)
    if url:
        return UrlSource(url, endpoint_id=neon.endpoint_id, ssl_root_cert=ssl_root_cert)
    if neon.api_key is not None:
        api = NeonApi(
            base_url=neon.api_url,
            api_key=neon.api_key.get_secret_value(),
            project_id=neon.project_id,
            clock=clock,
        )
        return NeonSource(api, neon.database, neon.user, endpoint_id=neon.endpoint_id, ssl_root_cert=ssl_root_cert)
    return NoSource()


def uses_neon_api(settings: Settings) -> bool:
    """Whether the services' database is the Neon project's, reached through its API (no ``DATABASE_URL``)."""
    return settings.database_url is None and settings.neon.api_key is not None


async def neon_database_url(settings: Settings, clock: Clock) -> str | None:
    """With ``NEON_API_KEY`` (and no ``DATABASE_URL``): the connection string of the project's default branch from
    the Neon API — its direct endpoint, over TLS; it holds the role's password. None without the key."""
    if not uses_neon_api(settings):
        return None
    return (await database_source(settings, clock).target()).conninfo()


def create_migrator(
    settings: Settings,
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    options: MigratorOptions | None = None,
    directory: Path | None = None,
) -> SqlMigrator:
    """The migrator for the migrate-neon stage (a :class:`sophia.engine.ports.Migrator`)."""
    clock = clock or SystemClock()
    state_dir = settings.state_dir
    options = options or MigratorOptions(backup_dir=state_dir / "backups")
    source = database_source(settings, clock, database_url=database_url)
    return SqlMigrator(source, directory or settings.migrations_dir, clock, options)


__all__ = [
    "AUDIT_SCHEMA",
    "ConnectError",
    "Finding",
    "LockNotObtained",
    "MigrationFailed",
    "MigrationRefused",
    "MigrationReport",
    "MigratorOptions",
    "RunnerOptions",
    "SqlMigrator",
    "append_audit_event",
    "append_audit_event_sync",
    "create_migrator",
    "database_source",
    "lint_migrations",
    "neon_database_url",
    "uses_neon_api",
    "verify_audit_chain",
]
