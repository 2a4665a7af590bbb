"""comms-mcp: ``POST /slack/post`` posts a message to a Slack channel through the configured backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from sophia.services.backends import SlackBackend, SlackMessage

CHANNEL_PATTERN = r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{8,20})$"
"""A channel name (``#general``: lower case, digits, ``._-``, at most 80) or a Slack id (``C0123ABCD``)."""


class SlackPostRequest(BaseModel):
    channel: Annotated[str, Field(pattern=CHANNEL_PATTERN, description="'#name' or a Slack channel id")]
    message: Annotated[str, Field(min_length=1, max_length=4000)]
    username: Annotated[str, Field(min_length=1, max_length=80)]


def add_comms_routes(app: FastAPI, slack: SlackBackend, auth: Callable[..., Awaitable[None]]) -> None:
    @app.post("/slack/post", tags=["slack"], dependencies=[Depends(auth)])
    async def slack_post(request: SlackPostRequest) -> dict[str, Any]:
        """Post ``message`` to ``channel`` as ``username``."""
        posted = await slack.post(SlackMessage(request.channel, request.message, request.username))
        return {"ok": True, "message_id": posted.message_id, "channel": posted.channel, "ts": posted.ts}
