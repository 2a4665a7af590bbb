"""Fake Slack and HubSpot on 127.0.0.1: real HTTP servers that answer like the real APIs and record every request.

Each keeps the requests it received (method, path, headers, body, arrival time) and can be told to answer the
next requests with a scripted failure (e.g. a 429 with ``Retry-After``) before it behaves normally again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, Any]:
        """The call's arguments, sent as JSON or as a form (slack_sdk uses either, by method)."""
        if self.headers.get("content-type", "").startswith("application/json"):
            parsed: dict[str, Any] = json.loads(self.body)
            return parsed
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


Responder = Callable[[Recorded], Answer]


class FakeApi:
    def __init__(self, respond: Responder) -> None:
        self._respond = respond
        self._lock = threading.Lock()
        self._script: list[Answer] = []
        self._requests: list[Recorded] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def fail_next(self, *answers: Answer) -> None:
        with self._lock:
            self._script.extend(answers)

    def __enter__(self) -> FakeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: Recorded) -> Answer:
        with self._lock:
            self._requests.append(request)
            scripted = self._script.pop(0) if self._script else None
        return scripted or self._respond(request)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorded = Recorded(self.command, url.path, parse_qs(url.query), headers, body, time.monotonic())
                answer = fake._answer(recorded)
                payload = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                content_type = "text/plain" if isinstance(answer.body, bytes) else "application/json"
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


SLACK_TOKEN = "xoxb-test-0000-secret"
SLACK_CHANNELS = {"#sophia-deploys": "C0SOPHIA01", "C0SOPHIA01": "C0SOPHIA01"}


def fake_slack() -> FakeApi:
    """``chat.postMessage`` like Slack's: bearer auth, known channels, ``{ok, channel, ts}``."""
    counter = iter(range(1, 10**6))

    def respond(request: Recorded) -> Answer:
        if request.path != "/api/chat.postMessage":
            return Answer(404, {"ok": False, "error": "unknown_method"})
        if request.headers.get("authorization") != f"Bearer {SLACK_TOKEN}":
            return Answer(200, {"ok": False, "error": "invalid_auth"})
        form = request.form
        channel = SLACK_CHANNELS.get(form.get("channel", ""))
        if channel is None:
            return Answer(200, {"ok": False, "error": "channel_not_found"})
        ts = f"1700000000.{next(counter):06d}"
        return Answer(200, {"ok": True, "channel": channel, "ts": ts, "message": {"text": form.get("text")}})

    return FakeApi(respond)


def fake_slack_webhook() -> FakeApi:
    def respond(request: Recorded) -> Answer:
        return Answer(200, b"ok") if request.path == "/services/T0/B0/secretpath" else Answer(404, b"no_service")

    return FakeApi(respond)


HUBSPOT_TOKEN = "pat-na1-test-secret"
HUBSPOT_OWNERS = {"ana@sophia.ai": "512"}


def fake_hubspot() -> FakeApi:
    """The CRM v3 tasks and owners APIs like HubSpot's: bearer auth, owners by email, created tasks with ids."""
    counter = iter(range(9001, 10**6))

    def respond(request: Recorded) -> Answer:
        if request.headers.get("authorization") != f"Bearer {HUBSPOT_TOKEN}":
            return Answer(401, {"status": "error", "message": "Authentication credentials not found.",
                                "category": "INVALID_AUTHENTICATION"})  # fmt: skip
        if request.method == "GET" and request.path == "/crm/v3/owners/":
            email = request.query.get("email", [""])[0]
            results = [{"id": HUBSPOT_OWNERS[email], "email": email}] if email in HUBSPOT_OWNERS else []
            return Answer(200, {"results": results})
        if request.method == "POST" and request.path == "/crm/v3/objects/tasks":
            properties = request.json["properties"]
            if properties.get("hs_task_priority") not in {"LOW", "MEDIUM", "HIGH"}:
                return Answer(400, {"status": "error", "message": "Property values were not valid",
                                    "category": "VALIDATION_ERROR"})  # fmt: skip
            now = "2026-01-01T00:00:00.000Z"
            body = {"id": str(next(counter)), "properties": properties, "createdAt": now, "updatedAt": now,
                    "archived": False}  # fmt: skip
            return Answer(201, body)
        return Answer(404, {"status": "error", "message": "not found", "category": "OBJECT_NOT_FOUND"})

    return FakeApi(respond)
