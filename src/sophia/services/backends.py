"""Where comms-mcp and crm-mcp deliver: one small Protocol per external system, and the sandbox implementation.

``SOPHIA_BACKEND=sandbox`` (the default, and the only backend so far) delivers into ``sandbox.outbox`` in the
service's own database. A live Slack or HubSpot backend implements the same Protocol and is chosen in
``make_backends``; nothing else in the services switches on the backend name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import psycopg

from sophia.services.database import Database
from sophia.services.sandbox import Origin, OutboxKind, OutboxRow, ensure_sandbox_schema_async, insert_outbox

Priority = Literal["LOW", "MEDIUM", "HIGH"]


@dataclass(frozen=True)
class SlackMessage:
    channel: str
    message: str
    username: str


@dataclass(frozen=True)
class PostedMessage:
    message_id: str
    channel: str
    ts: str


@dataclass(frozen=True)
class CrmTask:
    subject: str
    description: str
    priority: Priority
    assignee: str


@dataclass(frozen=True)
class CreatedTask:
    task_id: str


class SlackBackend(Protocol):
    async def post(self, message: SlackMessage) -> PostedMessage:
        """Post ``message`` to its channel; returns the message's id and Slack-style timestamp."""
        ...


class CrmBackend(Protocol):
    async def create_task(self, task: CrmTask) -> CreatedTask:
        """Create ``task`` in the CRM; returns its id."""
        ...


@dataclass(frozen=True)
class Backends:
    slack: SlackBackend
    crm: CrmBackend


class SandboxOutbox:
    """Delivers into ``sandbox.outbox``, creating the schema on the first delivery if it is missing."""

    def __init__(self, database: Database, origin: Origin) -> None:
        self._database = database
        self._origin = origin

    async def deliver(self, kind: OutboxKind, target: str, payload: dict[str, Any]) -> OutboxRow:
        async with self._database.connection() as conn:
            try:
                return await insert_outbox(conn, kind, target, payload, self._origin)
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                await ensure_sandbox_schema_async(conn)
                return await insert_outbox(conn, kind, target, payload, self._origin)


class SandboxSlack:
    """Slack messages become ``slack_message`` rows; the row id is the message id."""

    def __init__(self, outbox: SandboxOutbox) -> None:
        self._outbox = outbox

    async def post(self, message: SlackMessage) -> PostedMessage:
        row = await self._outbox.deliver("slack_message", message.channel, asdict(message))
        return PostedMessage(message_id=str(row.id), channel=message.channel, ts=f"{row.created_at.timestamp():.6f}")


class SandboxCrm:
    """CRM tasks become ``crm_task`` rows; the task id is ``task-<row id>``."""

    def __init__(self, outbox: SandboxOutbox) -> None:
        self._outbox = outbox

    async def create_task(self, task: CrmTask) -> CreatedTask:
        row = await self._outbox.deliver("crm_task", task.assignee, asdict(task))
        return CreatedTask(task_id=f"task-{row.id}")


def make_backends(name: Literal["sandbox"], database: Database, origin: Origin) -> Backends:
    """The backends named by ``SOPHIA_BACKEND``."""
    if name == "sandbox":
        outbox = SandboxOutbox(database, origin)
        return Backends(slack=SandboxSlack(outbox), crm=SandboxCrm(outbox))
    raise ValueError(f"unknown backend {name!r}")  # pragma: no cover - the settings model allows only sandbox
