"""Open a connection: SNI first, the endpoint option when Neon asks for it, backoff while a compute wakes up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection

from sophia.db.errors import ConnectError
from sophia.db.neon import DbTarget
from sophia.db.redact import redact
from sophia.engine.clock import Clock

MISSING_ENDPOINT = "endpoint id is not specified"
# Neon's proxy while a suspended compute starts, and Postgres itself while it starts.
COLD_COMPUTE = (
    "couldn't connect to compute node",
    "could not connect to compute node",
    "compute is starting",
    "the database system is starting up",
    "the database system is not yet accepting connections",
)


@dataclass(frozen=True)
class ConnectPolicy:
    attempts: int = 6  # cold-compute retries, the SNI fallback not counted
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0
    connect_timeout_s: int = 15


def with_endpoint_option(target: DbTarget) -> DbTarget:
    """Add ``endpoint=<id>`` to the startup options (keeping any options already there)."""
    assert target.endpoint_id is not None
    existing = target.kwargs.get("options", "").strip()
    option = f"endpoint={target.endpoint_id}"
    return target.with_params(options=f"{option} {existing}".strip())


async def connect(target: DbTarget, clock: Clock, policy: ConnectPolicy | None = None) -> AsyncConnection[Any]:
    """An autocommit connection to ``target``; raises :class:`ConnectError` with a password-free message."""
    policy = policy or ConnectPolicy()
    delay = policy.first_delay_s
    attempt = 0
    while True:
        try:
            return await psycopg.AsyncConnection.connect(
                target.conninfo(), autocommit=True, connect_timeout=policy.connect_timeout_s
            )
        except psycopg.Error as exc:
            text = str(exc)
            lowered = text.lower()
            asked = MISSING_ENDPOINT in lowered and "endpoint=" not in target.kwargs.get("options", "")
            if asked and target.endpoint_id:
                target = with_endpoint_option(target)
                continue
            attempt += 1
            if any(marker in lowered for marker in COLD_COMPUTE) and attempt < policy.attempts:
                await clock.sleep(delay)
                delay = min(delay * 2, policy.max_delay_s)
                continue
            detail = " ".join(line.strip() for line in text.strip().splitlines()[:2])
            tries = f" after {attempt} attempts" if attempt > 1 else ""
            raise ConnectError(
                f"cannot connect to {target.describe()}{tries}: {redact(detail, [target.password])}"
            ) from None
