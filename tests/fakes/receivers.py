"""Real receivers on 127.0.0.1 that record what they are sent: an HTTP server (fake Slack, PagerDuty, ...) and an SMTP
server (aiosmtpd). Tests assert on what actually arrived, not on what a mock was asked to do.

``HttpReceiver`` runs stdlib ``ThreadingHTTPServer`` in a thread, so it works under any event loop (and without one).
Script it with ``reply(...)``: each request consumes the next scripted ``Reply``; when the script is empty the
default reply answers. A reply can set the status and body, delay the answer, hang until the receiver stops, or drop
the connection without answering.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, Session

from tests.conftest import free_port


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "ok"
    content_type: str = "text/plain"
    delay_s: float = 0.0
    hang: bool = False  # never answer (until the receiver stops)
    drop: bool = False  # close the connection without answering

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status=status, body=json.dumps(payload), content_type="application/json")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    lines: tuple[tuple[str, str], ...] = ()  # every header line as sent, repeats included

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request (a killed load generator, a timeout) is normal here, not news."""


class HttpReceiver:
    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self._script: list[Reply] = []
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="http-receiver", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def reply(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._script.extend(replies)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging handlers
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, request: Request) -> Reply:
        with self._lock:
            self._requests.append(request)
            return self._script.pop(0) if self._script else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                lines = tuple((k.lower(), v) for k, v in self.headers.items())
                reply = receiver._next(Request(self.command, self.path, headers, body, lines))
                if reply.hang:
                    receiver._stopping.wait()
                    self.close_connection = True
                    return
                if reply.delay_s:
                    receiver._stopping.wait(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = reply.body.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        return Handler


@contextmanager
def http_receiver(default: Reply | None = None) -> Iterator[HttpReceiver]:
    with HttpReceiver(default) as receiver:
        yield receiver


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage


@dataclass
class _Collector:
    """aiosmtpd handler: keeps every message, refuses the recipients and DATA answers it is told to."""

    messages: list[Mail] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply, e.g. "550 5.1.1 unknown"
    data_replies: list[str] = field(default_factory=list)  # answers to the next DATA commands, e.g. "451 try later"

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        content = cast(bytes, envelope.original_content or envelope.content)
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(Mail(str(envelope.mail_from), tuple(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """aiosmtpd's Controller on 127.0.0.1 (its own thread and loop); optional AUTH with one username/password."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.collector = _Collector()
        self._credentials = credentials
        kwargs: dict[str, Any] = {}
        if credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self.port = free_port()
        self._controller = Controller(self.collector, hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        login = (auth_data.login.decode(), auth_data.password.decode()) if hasattr(auth_data, "login") else None
        ok = login == self._credentials
        return AuthResult(success=ok, handled=False)

    @property
    def messages(self) -> list[Mail]:
        return list(self.collector.messages)

    def __enter__(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def wait_until(predicate: Any, timeout_s: float = 5.0) -> None:
    """Poll a condition set by a receiver thread (for tests that do not drain)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)
