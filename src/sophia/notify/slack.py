"""Slack incoming webhook: one Block Kit message per notification.

The blocks are built with slack_sdk's Block Kit models (typed, and validated against Slack's limits by ``to_dict``).
They are posted with httpx rather than slack_sdk's ``AsyncWebhookClient``: that client is built on aiohttp, which we do
not ship (httpx is already our one HTTP client), and its sync sibling would block the event loop.
"""

from __future__ import annotations

from typing import Any

import httpx
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from sophia.config import NotifyConfig
from sophia.engine.dispatch import DeliveryError
from sophia.engine.model import Notification
from sophia.notify._format import emoji, facts, is_web_link, title
from sophia.notify._http import post_json, rejection, tls_context
from sophia.notify._redact import guard_library_logs, origin, redact, url_secrets

HEADER_MAX = 150
TEXT_MAX = 3000
FIELD_MAX = 2000


def escape(text: str) -> str:
    """Slack mrkdwn control characters; everything we interpolate (reasons, summaries) is untrusted text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_blocks(notification: Notification) -> list[Block]:
    """Header, summary, the facts as fields, the reason, a report button, a context line."""
    fields = [
        MarkdownTextObject(text=_clip(f"*{label}:*\n{escape(value)}", FIELD_MAX))
        for label, value in facts(notification)
    ]
    blocks: list[Block] = [
        HeaderBlock(
            text=PlainTextObject(text=_clip(f"{emoji(notification)} {title(notification)}", HEADER_MAX), emoji=True)
        ),
        SectionBlock(text=MarkdownTextObject(text=_clip(escape(notification.summary) or " ", TEXT_MAX))),
        SectionBlock(fields=fields[:10]),
    ]
    if notification.reason:
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=_clip(f"*Reason:*\n{escape(notification.reason)}", TEXT_MAX)))
        )
    context = f"sophia release engine · run `{notification.run_id}`"
    if notification.report_url and is_web_link(notification.report_url):
        button = ButtonElement(text="Open run report", url=notification.report_url, action_id="open-report")
        blocks.append(ActionsBlock(elements=[button]))
    elif notification.report_url:
        context += f" · report: `{escape(notification.report_url)}`"
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_clip(context, TEXT_MAX))]))
    return blocks


def build_message(notification: Notification) -> dict[str, Any]:
    """The webhook body: ``text`` is the fallback shown in notifications and by clients without Block Kit."""
    return {
        "text": escape(f"{title(notification)}: {notification.summary}"),
        "blocks": [block.to_dict() for block in build_blocks(notification)],
    }


class SlackNotifier:
    name = "slack"

    def __init__(
        self, webhook_url: str, *, timeout_s: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._url = webhook_url
        self._secrets = url_secrets(webhook_url)
        guard_library_logs(self._secrets)
        tls_context()
        self._timeout_s = timeout_s
        self._transport = transport

    @classmethod
    def from_config(cls, config: NotifyConfig) -> SlackNotifier:
        if config.slack_webhook_url is None:
            raise ValueError("slack needs notify.slack_webhook_url (SLACK_WEBHOOK_URL)")
        return cls(config.slack_webhook_url.get_secret_value(), timeout_s=config.timeout_s)

    def __repr__(self) -> str:
        return f"SlackNotifier({origin(self._url)}/…)"

    async def send(self, notification: Notification) -> None:
        response = await post_json(
            self._url,
            build_message(notification),
            channel=self.name,
            timeout_s=self._timeout_s,
            secrets=self._secrets,
            transport=self._transport,
        )
        if not response.is_success:
            raise rejection(self.name, response, self._secrets)
        if response.text.strip() != "ok":
            snippet = redact(response.text[:200], self._secrets).strip() or "empty body"
            raise DeliveryError(f"slack: {origin(self._url)} answered {response.status_code} but not 'ok': {snippet}")
