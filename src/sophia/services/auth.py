"""Bearer-token protection of everything but the probes: ``Authorization: Bearer <SOPHIA_API_TOKEN>``.

It is ASGI middleware, not a route dependency, so it also guards what FastAPI does not route: the MCP endpoint,
the OpenAPI document, and unknown paths (a caller without the token cannot even learn which paths exist). The
token is compared in constant time. The caller's identity for the audit trail is ``bearer:<fingerprint>``, the
first 12 hex digits of the token's SHA-256: it tells tokens apart (after a rotation) without revealing one.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from sophia.services.errors import send_error

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
UNAUTHORIZED = "missing or invalid bearer token"


def fingerprint(token: str) -> str:
    return "bearer:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def presented_token(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class BearerAuthMiddleware:
    """Answers 401 (``WWW-Authenticate: Bearer``) unless the request carries the token; probes stay open."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = token.encode()
        self._actor = fingerprint(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = presented_token(scope)
        if presented is None or not hmac.compare_digest(presented, self._expected):
            await send_error(send, 401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
            return
        scope.setdefault("state", {})["actor"] = self._actor
        await self.app(scope, receive, send)
