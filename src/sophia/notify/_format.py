"""How a notification reads to a human: shared by the Slack and email channels."""

from __future__ import annotations

from sophia.engine.model import Notification

_LABELS = {
    "started": "started",
    "promoted": "promoted",
    "rolled_back": "rolled back",
    "rollback_failed": "ROLLBACK FAILED",
    "aborted": "aborted",
    "stage_failed": "stage failed",
}
_EMOJI = {
    "started": ":rocket:",
    "promoted": ":white_check_mark:",
    "rolled_back": ":rewind:",
    "rollback_failed": ":rotating_light:",
    "aborted": ":no_entry:",
    "stage_failed": ":x:",
}


def outcome_label(notification: Notification) -> str:
    return _LABELS.get(notification.kind, notification.kind.replace("_", " "))


def emoji(notification: Notification) -> str:
    return _EMOJI.get(notification.kind, ":information_source:")


def title(notification: Notification) -> str:
    """One line, e.g. ``Sophia v1.2.0 rolled back on local``."""
    return f"Sophia {notification.version} {outcome_label(notification)} on {notification.platform}"


def facts(notification: Notification) -> list[tuple[str, str]]:
    """The labelled facts of a notification, in display order; absent ones are left out."""
    rows: list[tuple[str, str | None]] = [
        ("Run", notification.run_id),
        ("Version", notification.version),
        ("Platform", notification.platform),
        ("Outcome", f"{outcome_label(notification)} ({notification.kind})"),
        ("Severity", notification.severity),
        ("Stage", notification.stage),
        ("Service", notification.service),
        ("Occurred", notification.occurred_at.isoformat(timespec="seconds")),
    ]
    return [(label, value) for label, value in rows if value]


def is_web_link(url: str | None) -> bool:
    """Only http(s) links become buttons and PagerDuty links; a local report path is shown as text instead."""
    return bool(url) and str(url).startswith(("https://", "http://"))
