"""Keep the database password out of every message the store produces."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def password_of(dsn: str) -> str | None:
    """The password in a libpq URI or key=value string, found without a parser that could echo the DSN."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        value = conninfo_to_dict(dsn).get("password")
    except Exception:  # a malformed DSN: redact() still hides URL- and keyword-shaped passwords
        return None
    return str(value) if value else None


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` and anything shaped like a password in a connection string replaced by ``***``."""
    if secret:
        text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    return _KEYWORD_PASSWORD.sub(r"\g<head>***", text)
