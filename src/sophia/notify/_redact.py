"""Keep secrets (webhook paths, routing keys, passwords) out of every message a channel raises or logs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

MASK = "***"
_MIN_SECRET_CHARS = 6


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: safe to show, enough to tell which endpoint failed."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret-bearing parts of a URL: itself, its path and query, each longer path segment, its password."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return (url,)
    segments = [s for s in parts.path.split("/") if len(s) >= _MIN_SECRET_CHARS]
    return tuple(s for s in (url, parts.path, parts.query, password, *segments) if s)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (raw or URL-quoted) in ``text`` with ``***``; longest first so parts never leak."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, MASK)
    return text


class _RedactingFilter(logging.Filter):
    """Masks registered secrets in records of the HTTP libraries' own loggers (httpx logs every request URL)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            cleaned = redact(message, self.secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_FILTER = _RedactingFilter()
_GUARDED_LOGGERS = ("httpx", "httpcore")


def guard_library_logs(secrets: Iterable[str]) -> None:
    """Make sure the HTTP libraries never log ``secrets`` (httpx logs ``POST <full url>`` at INFO)."""
    _FILTER.secrets.update(s for s in secrets if s)
    for name in _GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
