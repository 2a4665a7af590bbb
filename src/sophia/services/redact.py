"""Keeping secrets out of responses and logs: the database password, the DSN itself and the API token."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"
_KEYWORD_PASSWORD = re.compile(r"""password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)""")


def dsn_secrets(dsn: str) -> list[str]:
    """The parts of a libpq DSN (URI or ``key=value`` form) that must never be shown: the DSN and its password."""
    found = [dsn]
    if "://" in dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    for match in _KEYWORD_PASSWORD.finditer(dsn):
        value = match.group(1)
        found += [value, value.strip("'")]
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (longest secrets first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def short_reason(error: BaseException, secrets: Iterable[str], limit: int = 200) -> str:
    """A one-line, secret-free description of ``error`` fit for a JSON response or a probe result."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    text = redact(text, secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RedactingFormatter(logging.Formatter):
    """A log formatter that masks the given secrets in the whole formatted record, tracebacks included."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)
