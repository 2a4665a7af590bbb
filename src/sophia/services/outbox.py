"""The sandbox backends: Slack messages and CRM tasks delivered into ``sandbox.outbox`` instead of the internet."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

import psycopg

from sophia.services.backends import CreatedTask, CrmTask, PostedMessage, SlackMessage
from sophia.services.database import Database
from sophia.services.sandbox import Origin, OutboxKind, OutboxRow, ensure_sandbox_schema_async, insert_outbox


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

    name = "sandbox"
    needs_database = True

    def __init__(self, outbox: SandboxOutbox) -> None:
        self._outbox = outbox

    async def post(self, message: SlackMessage) -> PostedMessage:
        row = await self._outbox.deliver("slack_message", message.channel, asdict(message))
        return PostedMessage(message_id=str(row.id), channel=message.channel, ts=f"{row.created_at.timestamp():.6f}")

    async def aclose(self) -> None:
        return None


class SandboxCrm:
    """CRM tasks become ``crm_task`` rows; the task id is ``task-<row id>``."""

    name = "sandbox"
    needs_database = True

    def __init__(self, outbox: SandboxOutbox) -> None:
        self._outbox = outbox

    async def create_task(self, task: CrmTask) -> CreatedTask:
        payload = {**asdict(task), "due_at": task.due_at.astimezone(dt.UTC).isoformat()}
        row = await self._outbox.deliver("crm_task", task.assignee, payload)
        return CreatedTask(task_id=f"task-{row.id}")

    async def aclose(self) -> None:
        return None
