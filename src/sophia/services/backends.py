"""Where comms-mcp and crm-mcp deliver: one small Protocol per external system, and the factory choosing one.

=================  =====================================================  ===============================
kind               backends                                               chosen when
=================  =====================================================  ===============================
Slack (comms-mcp)  ``slack-api`` (``chat.postMessage``, bot token)        ``SLACK_BOT_TOKEN`` is set
                   ``slack-webhook`` (incoming webhook)                   ``SLACK_WEBHOOK_URL`` is set
                   ``sandbox`` (``sandbox.outbox``)                       neither, or ``SOPHIA_BACKEND=sandbox``
CRM (crm-mcp)      ``hubspot`` (CRM v3 tasks API)                         ``HUBSPOT_ACCESS_TOKEN`` is set
                   ``sandbox`` (``sandbox.outbox``)                       otherwise
=================  =====================================================  ===============================

``slack_backend`` and ``crm_backend`` are the only code that looks at which one is configured; each live
implementation's module (and its client library) is imported only when it is chosen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from sophia.services.database import Database
from sophia.services.errors import ServiceError
from sophia.services.sandbox import Origin
from sophia.services.settings import ServiceSettings

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
    ts: str | None  # an incoming webhook does not say


@dataclass(frozen=True)
class CrmTask:
    subject: str
    description: str
    priority: Priority
    assignee: str
    due_at: dt.datetime


@dataclass(frozen=True)
class CreatedTask:
    task_id: str


class UpstreamError(ServiceError):
    """The external system refused or failed; ``status`` is what we answer, ``retry_after`` its advice (seconds)."""

    status = 502

    def __init__(self, message: str, *, status: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class SlackBackend(Protocol):
    name: str
    needs_database: bool

    async def post(self, message: SlackMessage) -> PostedMessage:
        """Post ``message`` to its channel; raises ``UpstreamError`` when Slack refuses."""
        ...

    async def aclose(self) -> None: ...


class CrmBackend(Protocol):
    name: str
    needs_database: bool

    async def create_task(self, task: CrmTask) -> CreatedTask:
        """Create ``task`` in the CRM and return its id; raises ``UpstreamError`` when the CRM refuses."""
        ...

    async def aclose(self) -> None: ...


SlackFactory = Callable[[ServiceSettings, Database, Origin], SlackBackend]
CrmFactory = Callable[[ServiceSettings, Database, Origin], CrmBackend]


def _sandbox_slack(settings: ServiceSettings, database: Database, origin: Origin) -> SlackBackend:
    from sophia.services.outbox import SandboxOutbox, SandboxSlack

    return SandboxSlack(SandboxOutbox(database, origin))


def _sandbox_crm(settings: ServiceSettings, database: Database, origin: Origin) -> CrmBackend:
    from sophia.services.outbox import SandboxCrm, SandboxOutbox

    return SandboxCrm(SandboxOutbox(database, origin))


def _slack_api(settings: ServiceSettings, database: Database, origin: Origin) -> SlackBackend:
    from sophia.services.slack import SlackApi

    assert settings.slack_bot_token is not None
    return SlackApi(settings.slack_bot_token.get_secret_value(), str(settings.slack_api_url))


def _slack_webhook(settings: ServiceSettings, database: Database, origin: Origin) -> SlackBackend:
    from sophia.services.slack import SlackWebhook

    assert settings.slack_webhook_url is not None
    return SlackWebhook(settings.slack_webhook_url.get_secret_value())


def _hubspot(settings: ServiceSettings, database: Database, origin: Origin) -> CrmBackend:
    from sophia.services.hubspot import HubSpotCrm

    assert settings.hubspot_access_token is not None
    return HubSpotCrm(settings.hubspot_access_token.get_secret_value(), str(settings.hubspot_api_url).rstrip("/"))


SLACK_BACKENDS: dict[str, SlackFactory] = {
    "sandbox": _sandbox_slack,
    "slack-api": _slack_api,
    "slack-webhook": _slack_webhook,
}
CRM_BACKENDS: dict[str, CrmFactory] = {"sandbox": _sandbox_crm, "hubspot": _hubspot}


def slack_backend_name(settings: ServiceSettings) -> str:
    if settings.backend == "sandbox":
        return "sandbox"
    if settings.slack_bot_token:
        return "slack-api"
    return "slack-webhook" if settings.slack_webhook_url else "sandbox"


def crm_backend_name(settings: ServiceSettings) -> str:
    live = settings.backend == "auto" and settings.hubspot_access_token is not None
    return "hubspot" if live else "sandbox"


def slack_backend(settings: ServiceSettings, database: Database, origin: Origin) -> SlackBackend:
    """The Slack backend the settings configure."""
    return SLACK_BACKENDS[slack_backend_name(settings)](settings, database, origin)


def crm_backend(settings: ServiceSettings, database: Database, origin: Origin) -> CrmBackend:
    """The CRM backend the settings configure."""
    return CRM_BACKENDS[crm_backend_name(settings)](settings, database, origin)
