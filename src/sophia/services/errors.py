"""How a service answers when something goes wrong, and the envelope every response travels in.

One error shape everywhere: ``{"ok": false, "error": "<what went wrong>"}``, plus ``detail`` where there is more
to say (the offending fields of a 422, Postgres's message for a refused query). 401 without a valid token,
404/405 for unknown routes, 413 for a body over the cap, 422 for invalid input (unknown fields included),
429/502/503/504 when Slack or HubSpot refuse or fail, 503 when the database cannot be reached, and a bare 500
(without internals) for anything unexpected. Nothing in an answer echoes the request's values back.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sophia.services.database import DatabaseUnavailable

INTERNAL_ERROR_BODY = json.dumps({"ok": False, "error": "internal error"}).encode()
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

log = logging.getLogger("sophia.services")


class ServiceError(Exception):
    """An error meant for the client: its message is returned as ``error`` with ``status``."""

    status = 400

    def __init__(
        self, message: str, *, status: int | None = None, detail: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.retry_after = retry_after
        if status is not None:
            self.status = status


def error_body(message: str, detail: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error": message}
    if detail is not None:
        body["detail"] = detail
    return body


def error_response(
    status: int, message: str, *, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, detail), status_code=status, headers=headers)


def field_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic's errors without the offending input (which may be long, or a secret pasted by mistake)."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]


def describe_field_errors(errors: list[dict[str, Any]]) -> str:
    first = errors[0] if errors else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid request: {where}: {first['msg']}{more}"


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return error_response(exc.status, exc.message, detail=exc.detail, headers=headers or None)


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return error_response(503, f"database unavailable: {exc}")


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    return error_response(422, describe_field_errors(errors), detail=errors)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)


def request_id(scope: Scope) -> str:
    """The request's id: set by ``EnvelopeMiddleware`` from ``x-request-id`` (when well-formed) or generated."""
    return str(scope.get("state", {}).get("request_id", ""))


async def send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer with the error shape straight from ASGI middleware (before any route ran)."""
    payload = json.dumps(error_body(message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class EnvelopeMiddleware:
    """Identity and request-id headers on every response; any unhandled exception becomes a bare 500."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == REQUEST_ID_HEADER.encode()), "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        extra = [*self.headers, (REQUEST_ID_HEADER.encode(), rid.encode())]
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:
                raise
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(INTERNAL_ERROR_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": INTERNAL_ERROR_BODY})
