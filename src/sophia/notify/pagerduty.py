"""PagerDuty Events API v2: a failed run opens an incident, a later promotion resolves the runs it supersedes.

Every run has one dedup key, ``sophia-<run_id>``, so the trigger for a run and the resolve sent when a later release
is promoted address the same incident, and repeated deliveries (retries) never open duplicates.
"""

from __future__ import annotations

from typing import Any

import httpx

from sophia.config import NotifyConfig
from sophia.engine.dispatch import DeliveryError
from sophia.engine.model import Notification
from sophia.notify._format import is_web_link, title
from sophia.notify._http import post_json, rejection, tls_context
from sophia.notify._redact import guard_library_logs, origin

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
TRIGGER_KINDS = frozenset({"rolled_back", "rollback_failed", "aborted", "stage_failed"})
RESOLVE_KINDS = frozenset({"promoted"})
SUMMARY_MAX = 1024
ACCEPTED = 202


def dedup_key(run_id: str) -> str:
    return f"sophia-{run_id}"


def trigger_event(routing_key: str, notification: Notification) -> dict[str, Any]:
    summary = f"{title(notification)}: {notification.summary}"
    details = {
        "run_id": notification.run_id,
        "version": notification.version,
        "platform": notification.platform,
        "kind": notification.kind,
        "stage": notification.stage,
        "service": notification.service,
        "reason": notification.reason,
        "report": notification.report_url,
    }
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(notification.run_id),
        "client": "sophia release engine",
        "payload": {
            "summary": summary if len(summary) <= SUMMARY_MAX else summary[: SUMMARY_MAX - 1] + "…",
            "source": f"sophia/{notification.platform}",
            "severity": "critical" if notification.kind == "rollback_failed" else "error",
            "timestamp": notification.occurred_at.isoformat(),
            "component": notification.service or "sophia",
            "group": notification.stage or "release",
            "class": notification.kind,
            "custom_details": {k: v for k, v in details.items() if v is not None},
        },
    }
    if is_web_link(notification.report_url):
        event["links"] = [{"href": notification.report_url, "text": "Sophia run report"}]
    return event


def resolve_event(routing_key: str, run_id: str) -> dict[str, Any]:
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(run_id)}


def events_for(routing_key: str, notification: Notification) -> list[dict[str, Any]]:
    """The events one notification becomes: a trigger, resolves for the runs a promotion supersedes, or nothing."""
    if notification.kind in TRIGGER_KINDS:
        return [trigger_event(routing_key, notification)]
    if notification.kind in RESOLVE_KINDS:
        return [resolve_event(routing_key, run_id) for run_id in dict.fromkeys(notification.resolves)]
    return []


class PagerDutyNotifier:
    name = "pagerduty"

    def __init__(
        self,
        routing_key: str,
        *,
        url: str = EVENTS_URL,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._routing_key = routing_key
        guard_library_logs([routing_key])
        tls_context()
        self._url = url
        self._timeout_s = timeout_s
        self._transport = transport

    @classmethod
    def from_config(cls, config: NotifyConfig) -> PagerDutyNotifier:
        if config.pagerduty_integration_key is None:
            raise ValueError("pagerduty needs notify.pagerduty_integration_key (PAGERDUTY_INTEGRATION_KEY)")
        key = config.pagerduty_integration_key.get_secret_value()
        return cls(key, url=config.pagerduty_url, timeout_s=config.timeout_s)

    def __repr__(self) -> str:
        return f"PagerDutyNotifier({origin(self._url)})"

    def wants(self, notification: Notification) -> bool:
        return bool(events_for(self._routing_key, notification))

    async def send(self, notification: Notification) -> None:
        """Send every event; resolves are idempotent, so a retry after a partial failure simply repeats them."""
        for event in events_for(self._routing_key, notification):
            await self._post(event)

    async def _post(self, event: dict[str, Any]) -> None:
        secrets = (self._routing_key,)
        response = await post_json(
            self._url, event, channel=self.name, timeout_s=self._timeout_s, secrets=secrets, transport=self._transport
        )
        if response.status_code == ACCEPTED:
            return
        if response.is_success:
            raise DeliveryError(f"pagerduty: {origin(self._url)} answered {response.status_code}, expected 202")
        raise rejection(self.name, response, secrets)
