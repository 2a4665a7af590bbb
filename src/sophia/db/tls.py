"""The rule for database connections: TLS for every server that is not on this machine.

A connection string names where it goes by ``hostaddr`` (when given, the address actually dialled) or ``host``; a
connection stays on the machine when every such target is a loopback address, ``localhost`` or a Unix socket
(a path, or no host at all). Anything else must ask libpq for TLS with ``sslmode`` ``require``, ``verify-ca`` or
``verify-full``: ``prefer`` and ``allow`` fall back to plain text when the server offers no TLS, so they do not count.
"""

from __future__ import annotations

import ipaddress

from psycopg.conninfo import conninfo_to_dict

TLS_MODES = frozenset({"require", "verify-ca", "verify-full"})


def _on_this_machine(target: str) -> bool:
    target = target.strip()
    if not target or target.startswith(("/", "@")) or target.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(target.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_problem(url: str) -> str | None:
    """Why ``url`` may not be used (not a connection string, or off this machine without TLS); None when fine.

    The answer never quotes the URL, which may hold a password."""
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except Exception:  # psycopg raises several types, and their text could echo the password
        return "not a valid PostgreSQL connection string"
    targets = (params.get("hostaddr") or params.get("host") or "").split(",")
    remote = [t.strip() for t in targets if not _on_this_machine(t)]
    if not remote or params.get("sslmode") in TLS_MODES:
        return None
    where = params.get("host") or remote[0]
    return f"the connection to {where} must use TLS: add sslmode=verify-full (or require) to it"
