"""comms-mcp: ``POST /slack/post`` (and the MCP tool ``slack_post``) posts a message to a Slack channel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from sophia.services.audit import AuditLog, Caller, caller_of
from sophia.services.backends import SlackBackend, SlackMessage, UpstreamError
from sophia.services.limits import RequestBody

CHANNEL_PATTERN = r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{8,20})$"
"""A channel name (``#general``: lower case, digits, ``._-``, at most 80) or a Slack id (``C0123ABCD``)."""


class SlackPostRequest(RequestBody):
    channel: Annotated[str, Field(pattern=CHANNEL_PATTERN, description="'#name' or a Slack channel id")]
    message: Annotated[str, Field(min_length=1, max_length=4000)]
    username: Annotated[str, Field(min_length=1, max_length=80)]


class SlackPostResponse(BaseModel):
    ok: bool
    channel: str
    ts: str | None
    message_id: str


class Comms:
    """The one implementation behind the HTTP endpoint and the MCP tool: deliver, then audit."""

    def __init__(self, slack: SlackBackend, audit: AuditLog) -> None:
        self.slack = slack
        self._audit = audit

    async def post(self, request: SlackPostRequest, caller: Caller) -> SlackPostResponse:
        meta: dict[str, Any] = {"backend": self.slack.name, "username": request.username}
        try:
            posted = await self.slack.post(SlackMessage(request.channel, request.message, request.username))
        except UpstreamError as exc:
            result = "error" if exc.status >= 500 else "failure"
            await self._audit.record(caller, "slack.post", request.channel, result, {**meta, "status": exc.status})
            raise
        await self._audit.record(caller, "slack.post", request.channel, "success", {**meta, "ts": posted.ts})
        return SlackPostResponse(ok=True, channel=posted.channel, ts=posted.ts, message_id=posted.message_id)


def add_comms_routes(app: FastAPI, comms: Comms) -> None:
    @app.post("/slack/post", tags=["slack"])
    async def slack_post(request: SlackPostRequest, caller: Annotated[Caller, Depends(caller_of)]) -> SlackPostResponse:
        """Post ``message`` to ``channel`` as ``username``; returns Slack's channel id and message timestamp."""
        return await comms.post(request, caller)
