"""Notification channels, each behind ``sophia.engine.ports.Notifier``; ``create_notifiers`` is the only place that
knows which channels exist."""

from __future__ import annotations

import logging

from sophia.config import NotifyConfig
from sophia.engine.clock import Clock
from sophia.engine.dispatch import NotificationDispatcher
from sophia.engine.ports import Notifier
from sophia.notify.email import EmailNotifier
from sophia.notify.nop import NopNotifier
from sophia.notify.pagerduty import PagerDutyNotifier
from sophia.notify.slack import SlackNotifier

__all__ = ["create_dispatcher", "create_notifiers"]

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_S = 1.0


def create_notifiers(config: NotifyConfig) -> list[Notifier]:
    """One notifier per configured channel; just the no-op one when nothing is configured."""
    notifiers: list[Notifier] = []
    if config.slack_webhook_url is not None:
        notifiers.append(SlackNotifier.from_config(config))
    if config.pagerduty_integration_key is not None:
        notifiers.append(PagerDutyNotifier.from_config(config))
    if config.smtp_host:
        if config.email_to:
            notifiers.append(EmailNotifier.from_config(config))
        else:
            log.warning("SMTP_HOST is set but EMAIL_TO is empty: email notifications are off")
    return notifiers or [NopNotifier()]


def create_dispatcher(
    config: NotifyConfig, clock: Clock, *, backoff_s: float = DEFAULT_BACKOFF_S
) -> NotificationDispatcher:
    """The dispatcher over every configured channel, with the configured attempt timeout and attempt count."""
    return NotificationDispatcher(
        create_notifiers(config),
        clock,
        attempt_timeout_s=config.timeout_s,
        max_attempts=config.max_attempts,
        backoff_s=backoff_s,
    )
