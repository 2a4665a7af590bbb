"""Who may press the dashboard's buttons: an operator who knows the token, from a page the dashboard served.

Without a token the dashboard is read-only: the action endpoints do not exist (404). With one, ``POST /login``
with the token sets a session cookie (HttpOnly, SameSite=Strict) holding a random session id and its MAC; each
action must carry that cookie, a CSRF token derived from the session (the double-submit value the page embeds), and,
when the browser sends one, an ``Origin`` naming this server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "sophia_dashboard_session"


def _mac(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Guard:
    token: str
    key: bytes

    @classmethod
    def with_token(cls, token: str) -> Guard:
        if len(token) < 16:
            raise ValueError("the dashboard token must be at least 16 characters")
        return cls(token, secrets.token_bytes(32))

    def accepts_token(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def new_session(self) -> str:
        session = secrets.token_urlsafe(24)
        return f"{session}.{_mac(self.key, 'session', session)}"

    def session_of(self, cookie: str | None) -> str | None:
        """The session id in a cookie this server issued, or None."""
        if not cookie or "." not in cookie:
            return None
        session, mac = cookie.rsplit(".", 1)
        return session if hmac.compare_digest(mac, _mac(self.key, "session", session)) else None

    def csrf_for(self, session: str) -> str:
        return _mac(self.key, "csrf", session)

    def csrf_ok(self, session: str, offered: str) -> bool:
        return hmac.compare_digest(offered.encode(), self.csrf_for(session).encode())
