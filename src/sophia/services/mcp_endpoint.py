"""The MCP server of one service (official MCP Python SDK): its tools call what the HTTP endpoints call.

Imported only by ``mcp_mount.LazyMcp`` on the first ``/mcp`` request (this module imports the SDK at its top, so
the tools' type hints resolve). Every service has ``service_info``; comms-mcp adds ``slack_post``, crm-mcp
``create_task``, analytics-mcp ``query_neon``. Arguments are validated by the same request models as the HTTP
endpoints, side effects are audited the same way (the caller comes from the HTTP request the tool call arrived
in), and errors come back as MCP tool errors carrying the same message the HTTP answer would.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from sophia.services.analytics import Analytics, QueryRequest
from sophia.services.audit import Caller
from sophia.services.comms import Comms, SlackPostRequest
from sophia.services.crm import Crm, TaskCreateRequest
from sophia.services.database import DatabaseUnavailable
from sophia.services.errors import ServiceError, describe_field_errors, field_errors

T = TypeVar("T")


@dataclass(frozen=True)
class McpSpec:
    """What one service exposes over MCP."""

    name: str
    version: str
    info: Callable[[], dict[str, Any]]
    comms: Comms | None = None
    crm: Crm | None = None
    analytics: Analytics | None = None


def caller_of(ctx: Context) -> Caller:
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state", {})
    return Caller(actor=str(state.get("actor", "unknown")), request_id=str(state.get("request_id", "")))


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    """Run a tool's work; our errors become tool errors with the HTTP answer's message."""
    try:
        return await work()
    except ValidationError as exc:
        raise ToolError(describe_field_errors(field_errors(exc.errors()))) from None
    except ServiceError as exc:
        raise ToolError(exc.message) from None
    except DatabaseUnavailable as exc:
        raise ToolError(f"database unavailable: {exc}") from None


def build(spec: McpSpec) -> MCPServer:
    server: MCPServer = MCPServer(name=spec.name, version=spec.version, log_level="WARNING")
    logging.getLogger("mcp").setLevel(logging.WARNING)  # not a line per request in the service's log

    @server.tool(name="service_info", description="Which service, release and track answers, and its endpoints.")
    async def service_info() -> dict[str, Any]:
        return spec.info()

    comms, crm, analytics = spec.comms, spec.crm, spec.analytics
    if comms is not None:

        @server.tool(name="slack_post", description="Post a message to a Slack channel ('#name' or an id).")
        async def slack_post(channel: str, message: str, username: str, ctx: Context) -> dict[str, Any]:
            request = await _call(_validated(SlackPostRequest, channel=channel, message=message, username=username))
            return (await _call(lambda: comms.post(request, caller_of(ctx)))).model_dump()

    if crm is not None:

        @server.tool(name="create_task", description="Create a CRM task (priority LOW, MEDIUM or HIGH).")
        async def create_task(
            subject: str, assignee: str, ctx: Context, *, description: str = "", priority: str = "MEDIUM",
            due_at: str | None = None,
        ) -> dict[str, Any]:  # fmt: skip
            fields = {"subject": subject, "assignee": assignee, "description": description, "priority": priority}
            request = await _call(_validated(TaskCreateRequest, **fields, due_at=due_at))
            return (await _call(lambda: crm.create_task(request, caller_of(ctx)))).model_dump()

    if analytics is not None:

        @server.tool(name="query_neon", description="Run one read-only SQL statement ($1 … $n parameters).")
        async def query_neon(query: str, params: list[Any] | None = None) -> dict[str, Any]:
            request = await _call(_validated(QueryRequest, query=query, params=params or []))
            return (await _call(lambda: analytics.query(request))).model_dump()

    return server


def _validated(model: type[T], **fields: Any) -> Callable[[], Awaitable[T]]:
    async def validate() -> T:
        return model(**fields)

    return validate
