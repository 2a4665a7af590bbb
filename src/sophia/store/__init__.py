"""The durable run store: run records (write-ahead), their event logs, and one lease per environment.

``create_store`` is the only place that picks an implementation: Postgres when a database URL is configured,
the in-process store otherwise.
"""

from __future__ import annotations

from sophia.engine.clock import Clock
from sophia.engine.heartbeat import Heartbeat, keep_alive
from sophia.engine.store import (
    ActiveLease,
    ClaimState,
    CorruptRecordError,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    RunExistsError,
    RunSummary,
    Store,
    StoreError,
    StoreUnavailableError,
    UnknownRunError,
)
from sophia.store.memory import MemoryStore


def create_store(dsn: str | None, *, clock: Clock | None = None) -> Store:
    """A :class:`PostgresStore` on ``dsn``, or a :class:`MemoryStore` (using ``clock``) when ``dsn`` is None."""
    if dsn is None:
        return MemoryStore(clock)
    from sophia.store.postgres import PostgresStore  # psycopg stays off the import path of memory-only uses

    return PostgresStore(dsn)


__all__ = [
    "ActiveLease",
    "ClaimState",
    "CorruptRecordError",
    "Heartbeat",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "MemoryStore",
    "RunExistsError",
    "RunSummary",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "UnknownRunError",
    "create_store",
    "keep_alive",
]
