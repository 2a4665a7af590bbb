"""Every side-effecting call appends one event to the audit trail (``audit.events``, ``ops/sql/001_audit.sql``).

The event says who (``actor``: the token's fingerprint), what (``action``, e.g. ``slack.post``), on what
(``target``: the channel or assignee), how it went (``result``: success, failure when the external system
refused, error when it could not be reached) and the request id, plus a small payload without message bodies.

The side effect comes first and cannot be taken back, so an audit trail that cannot be written does not turn a
delivered message into an error (the caller would retry and deliver it twice): it is logged, counted in
``sophia_audit_failures_total``, and the service's readiness is unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import Request
from psycopg.types.json import Jsonb

from sophia.services.database import Database, DatabaseUnavailable
from sophia.services.errors import request_id

log = logging.getLogger("sophia.services.audit")

_INSERT = (
    "INSERT INTO audit.events (actor, action, target, payload, result, request_id) VALUES (%s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class Caller:
    """Who made a request (the token's fingerprint) and the request's id."""

    actor: str
    request_id: str


def caller_of(request: Request) -> Caller:
    """FastAPI dependency: the caller recorded by the auth and envelope middleware."""
    state = request.scope.get("state", {})
    return Caller(actor=str(state.get("actor", "unknown")), request_id=request_id(request.scope))


class AuditLog:
    """Appends events through the service's own database; ``on_failure`` counts the ones that could not be."""

    def __init__(self, database: Database, service: str, on_failure: Callable[[], None] = lambda: None) -> None:
        self._database = database
        self._service = service
        self._on_failure = on_failure

    async def record(
        self, caller: Caller, action: str, target: str, result: str, payload: Mapping[str, Any] | None = None
    ) -> None:
        body = {"service": self._service, **(payload or {})}
        try:
            async with self._database.connection() as conn:
                await conn.execute(
                    _INSERT, (caller.actor, action, target[:500], Jsonb(body), result, caller.request_id)
                )
        except (psycopg.Error, DatabaseUnavailable) as exc:
            self._on_failure()
            log.error("audit event %s on %s (%s) not recorded: %s", action, target, result, self._database.reason(exc))
