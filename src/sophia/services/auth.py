"""Bearer-token protection of the business endpoints (``SOPHIA_API_TOKEN``); probes never need it."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header

from sophia.services.errors import ServiceError


def bearer_auth(token: str | None) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency requiring ``Authorization: Bearer <token>``; a no-op when ``token`` is ``None``."""
    expected = token.encode() if token else None

    async def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        if expected is None:
            return
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
            raise ServiceError("missing or invalid bearer token", status=401)

    return require_token
