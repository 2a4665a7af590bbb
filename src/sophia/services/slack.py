"""comms-mcp's live Slack backends, through the official ``slack_sdk``: the Web API and incoming webhooks.

``chat.postMessage`` (bot token) or an incoming webhook. A 429 is retried once after the ``Retry-After`` Slack
asks for, when that is at most ``MAX_RETRY_WAIT_S``; otherwise the caller gets our own 429 with Slack's
``Retry-After``. Slack's error codes become clear answers (``SLACK_ERRORS``); the token and the webhook URL never
appear in one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from sophia.services.backends import PostedMessage, SlackMessage, UpstreamError

MAX_RETRY_WAIT_S = 10
TIMEOUT_S = 10

log = logging.getLogger("sophia.services.slack")
Sleep = Callable[[float], Awaitable[None]]

SLACK_ERRORS: dict[str, tuple[int, str]] = {
    "channel_not_found": (404, "Slack has no channel by that name (or the bot cannot see it)"),
    "not_in_channel": (403, "the Slack bot is not a member of that channel"),
    "is_archived": (403, "that Slack channel is archived"),
    "restricted_action": (403, "Slack does not allow posting to that channel"),
    "msg_too_long": (422, "the message is too long for Slack"),
    "no_text": (422, "Slack needs message text"),
    "ratelimited": (429, "Slack is rate limiting us; retry later"),
    "invalid_auth": (502, "Slack refused the bot token"),
    "not_authed": (502, "Slack refused the bot token"),
    "token_revoked": (502, "Slack refused the bot token"),
    "token_expired": (502, "Slack refused the bot token"),
    "account_inactive": (502, "Slack refused the bot token"),
    "missing_scope": (502, "the Slack bot lacks a scope it needs (chat:write, chat:write.customize)"),
    "invalid_token": (502, "Slack refused the webhook"),
    "no_service": (502, "the Slack webhook no longer exists"),
    "channel_is_archived": (403, "that Slack channel is archived"),
    "action_prohibited": (403, "Slack does not allow posting to that channel"),
    "internal_error": (503, "Slack had an internal error; retry later"),
    "fatal_error": (503, "Slack had an internal error; retry later"),
    "service_unavailable": (503, "Slack is unavailable; retry later"),
}


def retry_after_s(headers: Mapping[str, Any]) -> int | None:
    """``Retry-After`` in whole seconds (slack_sdk gives header values as lists), or None."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0, int(str(raw).strip()))
            except ValueError:
                return None
    return None


def slack_error(code: str | None, status: int, headers: Mapping[str, Any]) -> UpstreamError:
    """Our answer to a Slack refusal: a clear message and status; 429 passes Slack's ``Retry-After`` on."""
    retry_after = retry_after_s(headers)
    if status == 429 or code in {"ratelimited", "rate_limited"}:
        return UpstreamError("Slack is rate limiting us; retry later", status=429, retry_after=retry_after or 1)
    known = SLACK_ERRORS.get(code or "")
    if known is not None:
        return UpstreamError(f"{known[1]} ({code})", status=known[0])
    if status >= 500:
        return UpstreamError(f"Slack answered HTTP {status}; retry later", status=503)
    return UpstreamError(f"Slack refused the message ({code or f'HTTP {status}'})", status=502)


class RateLimitRetry(AsyncRetryHandler):
    """Retry a 429 once after its ``Retry-After`` (plus nothing: Slack means it), if that wait is short enough."""

    def __init__(self, max_wait_s: float = MAX_RETRY_WAIT_S, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(max_retry_count=1)
        self._max_wait_s = max_wait_s
        self._sleep = sleep

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = retry_after_s(response.headers)
        return wait is not None and wait <= self._max_wait_s

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        assert response is not None
        wait = retry_after_s(response.headers) or 0
        log.info("Slack answered 429; retrying after %d s", wait)
        state.next_attempt_requested = True
        await self._sleep(wait)
        state.increment_current_attempt()


def _handlers(sleep: Sleep) -> list[AsyncRetryHandler]:
    return [RateLimitRetry(sleep=sleep), AsyncConnectionErrorRetryHandler(max_retry_count=1)]


class SlackApi:
    """``chat.postMessage`` as a bot; ``base_url`` points at Slack (or, in tests, a fake Slack on 127.0.0.1)."""

    name = "slack-api"
    needs_database = False

    def __init__(self, token: str, base_url: str, *, sleep: Sleep = asyncio.sleep) -> None:
        self._client = AsyncWebClient(
            token=token, base_url=base_url, timeout=TIMEOUT_S, retry_handlers=_handlers(sleep)
        )

    async def post(self, message: SlackMessage) -> PostedMessage:
        try:
            reply = await self._client.chat_postMessage(
                channel=message.channel, text=message.message, username=message.username
            )
        except SlackApiError as exc:
            raise slack_error(exc.response.get("error"), exc.response.status_code, exc.response.headers) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"Slack did not answer ({type(exc).__name__})", status=504) from None
        ts = str(reply.get("ts") or "")
        return PostedMessage(message_id=ts, channel=str(reply.get("channel") or message.channel), ts=ts)

    async def aclose(self) -> None:
        return None


class SlackWebhook:
    """An incoming webhook: Slack answers ``ok`` and no timestamp; the channel is the webhook's own."""

    name = "slack-webhook"
    needs_database = False

    def __init__(self, url: str, *, sleep: Sleep = asyncio.sleep) -> None:
        self._client = AsyncWebhookClient(url, timeout=TIMEOUT_S, retry_handlers=_handlers(sleep))

    async def post(self, message: SlackMessage) -> PostedMessage:
        try:
            body = {"text": message.message, "username": message.username, "channel": message.channel}
            reply = await self._client.send_dict(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"Slack did not answer ({type(exc).__name__})", status=504) from None
        if reply.status_code != 200:
            code = reply.body.strip()[:64] if reply.body else None
            raise slack_error(code, reply.status_code, reply.headers)
        return PostedMessage(message_id="", channel=message.channel, ts=None)

    async def aclose(self) -> None:
        return None
