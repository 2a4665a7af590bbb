"""What can go wrong with a migration, split by what the operator must do about it.

Both kinds are :class:`sophia.engine.ports.MigrationError`, so the migrate-neon stage fails cleanly on either. The CLI
maps :class:`MigrationRefused` (nothing was changed) to exit 2 and :class:`MigrationFailed` (something ran and was
rolled back) to exit 1. Messages never carry passwords, API keys or connection strings with passwords.
"""

from __future__ import annotations

from sophia.engine.ports import MigrationError, MigrationRefusedError


class MigrationRefused(MigrationRefusedError):
    """Nothing was changed: bad input, an edited applied file, no connection, lock not obtained, lint errors."""


class LockNotObtained(MigrationRefused):
    """Another migrator held the migration lock for longer than we were willing to wait."""


class ConnectError(MigrationRefused):
    """The database could not be reached (after the SNI fallback and the cold-compute retries)."""


class MigrationFailed(MigrationError):
    """A migration failed; its transaction rolled back and the files applied earlier in the run were reverted."""

    def __init__(
        self,
        message: str,
        *,
        failed: str,
        reverted: tuple[str, ...] = (),
        not_reverted: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.failed = failed
        self.reverted = reverted
        self.not_reverted = not_reverted
