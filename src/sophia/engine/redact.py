"""Keep secrets out of what the engine writes: stage details, reports and events.

An unexpected exception's message can carry anything (a connection string, a webhook URL, a token), so it is
cleaned of every secret in the settings and of anything shaped like a credential before it is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from pydantic import BaseModel, SecretStr

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_BEARER = re.compile(r"(?P<head>Bearer\s+)\S+", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret and anything shaped like a credential replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    text = _KEYWORD_PASSWORD.sub(r"\g<head>***", text)
    return _BEARER.sub(r"\g<head>***", text)


def secrets_of(model: BaseModel) -> Iterator[str]:
    """Every ``SecretStr`` value in a settings model, however deeply nested."""
    for name in type(model).model_fields:
        yield from _values(getattr(model, name))


def _values(value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        yield from secrets_of(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _values(item)


def describe_exception(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """``TypeName: message`` with secrets removed (the type alone when the message is empty)."""
    message = redact(str(exc), secrets)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
