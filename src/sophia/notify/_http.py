"""One JSON POST with httpx, failures turned into scrubbed Delivery errors (httpx messages can contain the URL)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import httpx

from sophia.engine.dispatch import DeliveryError, PermanentDeliveryError
from sophia.notify._redact import origin, redact

_BODY_SNIPPET_CHARS = 200
_RETRYABLE_4XX = frozenset({408, 425, 429})


@cache
def tls_context() -> ssl.SSLContext:
    """Built once (channels warm it up front): loading the CA bundle takes tens of milliseconds per client otherwise,
    which would eat into every attempt's timeout."""
    return httpx.create_ssl_context()


async def post_json(
    url: str,
    body: Mapping[str, Any],
    *,
    channel: str,
    timeout_s: float,
    secrets: Sequence[str],
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.Response:
    """POST ``body``; transport failures become ``DeliveryError`` naming only the endpoint's origin."""
    try:
        async with httpx.AsyncClient(
            timeout=timeout_s, transport=transport, verify=tls_context(), follow_redirects=False
        ) as client:
            return await client.post(url, json=body)
    except httpx.TimeoutException as exc:
        reason = f"no answer within {timeout_s:g}s ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        reason = f"{type(exc).__name__}: {redact(str(exc), secrets) or 'no detail'}"
    # Raised outside the except blocks so the httpx exception (which carries the URL) is not even chained.
    raise DeliveryError(f"{channel}: request to {origin(url)} failed: {reason}")


def rejection(channel: str, response: httpx.Response, secrets: Sequence[str]) -> DeliveryError:
    """The error for an unwanted answer: permanent for 4xx (the request itself is wrong), retryable otherwise."""
    snippet = redact(response.text[:_BODY_SNIPPET_CHARS], secrets).strip() or "empty body"
    message = f"{channel}: {origin(str(response.request.url))} answered {response.status_code}: {snippet}"
    status = response.status_code
    if 300 <= status < 500 and status not in _RETRYABLE_4XX:
        return PermanentDeliveryError(message)
    return DeliveryError(message)
