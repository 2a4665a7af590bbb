"""crm-mcp: ``POST /tasks/create`` (and the MCP tool ``create_task``) creates a CRM (HubSpot) task."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import AwareDatetime, BaseModel, Field, field_validator

from sophia.services.audit import AuditLog, Caller, caller_of
from sophia.services.backends import CrmBackend, CrmTask, Priority, UpstreamError
from sophia.services.limits import RequestBody

DEFAULT_DUE = dt.timedelta(days=1)


class TaskCreateRequest(RequestBody):
    subject: Annotated[str, Field(min_length=1, max_length=255)]
    description: Annotated[str, Field(max_length=10_000)] = ""
    priority: Annotated[Priority, Field(description="LOW, MEDIUM or HIGH (any case)")] = "MEDIUM"
    assignee: Annotated[str, Field(min_length=1, max_length=255, description="HubSpot owner id or email")]
    due_at: Annotated[AwareDatetime | None, Field(description="when the task is due (default: in one day)")] = None

    @field_validator("priority", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class TaskCreateResponse(BaseModel):
    ok: bool
    task_id: str


class Crm:
    """The one implementation behind the HTTP endpoint and the MCP tool: create, then audit."""

    def __init__(self, backend: CrmBackend, audit: AuditLog) -> None:
        self.backend = backend
        self._audit = audit

    async def create_task(self, request: TaskCreateRequest, caller: Caller) -> TaskCreateResponse:
        due = request.due_at or dt.datetime.now(dt.UTC) + DEFAULT_DUE
        task = CrmTask(request.subject, request.description, request.priority, request.assignee, due)
        meta: dict[str, Any] = {"backend": self.backend.name, "priority": request.priority}
        try:
            created = await self.backend.create_task(task)
        except UpstreamError as exc:
            result = "error" if exc.status >= 500 else "failure"
            await self._audit.record(
                caller, "crm.create_task", request.assignee, result, {**meta, "status": exc.status}
            )
            raise
        await self._audit.record(
            caller, "crm.create_task", request.assignee, "success", {**meta, "id": created.task_id}
        )
        return TaskCreateResponse(ok=True, task_id=created.task_id)


def add_crm_routes(app: FastAPI, crm: Crm) -> None:
    @app.post("/tasks/create", tags=["crm"])
    async def create_task(
        request: TaskCreateRequest, caller: Annotated[Caller, Depends(caller_of)]
    ) -> TaskCreateResponse:
        """Create a task for ``assignee``; returns the task's id."""
        return await crm.create_task(request, caller)
