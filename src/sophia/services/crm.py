"""crm-mcp: ``POST /tasks/create`` creates a CRM (HubSpot) task through the configured backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field, field_validator

from sophia.services.backends import CrmBackend, CrmTask, Priority


class TaskCreateRequest(BaseModel):
    subject: Annotated[str, Field(min_length=1, max_length=255)]
    description: Annotated[str, Field(max_length=10_000)] = ""
    priority: Annotated[Priority, Field(description="LOW, MEDIUM or HIGH (any case)")] = "MEDIUM"
    assignee: Annotated[str, Field(min_length=1, max_length=255)]

    @field_validator("priority", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


def add_crm_routes(app: FastAPI, crm: CrmBackend, auth: Callable[..., Awaitable[None]]) -> None:
    @app.post("/tasks/create", tags=["crm"], dependencies=[Depends(auth)])
    async def create_task(request: TaskCreateRequest) -> dict[str, Any]:
        """Create a task for ``assignee``."""
        task = CrmTask(request.subject, request.description, request.priority, request.assignee)
        created = await crm.create_task(task)
        return {"ok": True, "task_id": created.task_id}
