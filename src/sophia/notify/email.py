"""Email over SMTP (aiosmtplib, asyncio-native): a plain-text summary with an HTML alternative.

SMTP answers are classified by their code: 5xx is permanent (a refused recipient or bad credentials will be refused
again), 4xx and connection trouble are transient and retried by the dispatcher. A server that lacks what the
configuration needs (STARTTLS, AUTH) is permanent too: it will lack it on the next attempt as well.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from sophia.config import NotifyConfig
from sophia.engine.dispatch import DeliveryError, PermanentDeliveryError
from sophia.engine.model import Notification
from sophia.notify._format import facts, title
from sophia.notify._redact import redact

IMPLICIT_TLS_PORT = 465


def subject(notification: Notification) -> str:
    return f"[sophia] {title(notification)} (run {notification.run_id})"


def plain_body(notification: Notification) -> str:
    lines = [title(notification), "", notification.summary, ""]
    lines += [f"{label + ':':<10} {value}" for label, value in facts(notification)]
    if notification.reason:
        lines += ["", "Reason:", notification.reason]
    if notification.report_url:
        lines += ["", f"Run report: {notification.report_url}"]
    lines += ["", "-- ", "sophia release engine"]
    return "\n".join(lines) + "\n"


def html_body(notification: Notification) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><th align='left'>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in facts(notification)
    )
    parts = [f"<h2>{e(title(notification))}</h2>", f"<p>{e(notification.summary)}</p>", f"<table>{rows}</table>"]
    if notification.reason:
        parts.append(f"<h3>Reason</h3><pre>{e(notification.reason)}</pre>")
    if notification.report_url:
        parts.append(f'<p><a href="{e(notification.report_url, quote=True)}">Open the run report</a></p>')
    return "<html><body>" + "".join(parts) + "</body></html>"


def build_message(notification: Notification, sender: str, recipients: Sequence[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(notification)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(notification.occurred_at)
    message["Message-ID"] = make_msgid(idstring=f"sophia-{notification.run_id}-{notification.kind}")
    message.set_content(plain_body(notification))
    message.add_alternative(html_body(notification), subtype="html")
    return message


class EmailNotifier:
    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout_s: float = 5.0,
    ) -> None:
        if not recipients:
            raise ValueError("email needs at least one recipient (notify.email_to / EMAIL_TO)")
        self._host = host
        self._port = port
        self._sender = sender
        self._recipients = tuple(recipients)
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout_s = timeout_s

    @classmethod
    def from_config(cls, config: NotifyConfig) -> EmailNotifier:
        if not config.smtp_host:
            raise ValueError("email needs notify.smtp_host (SMTP_HOST)")
        return cls(
            host=config.smtp_host,
            port=config.smtp_port,
            sender=config.email_from,
            recipients=config.email_to,
            username=config.smtp_username,
            password=config.smtp_password.get_secret_value() if config.smtp_password else None,
            starttls=config.smtp_starttls,
            timeout_s=config.timeout_s,
        )

    def __repr__(self) -> str:
        return f"EmailNotifier({self._host}:{self._port} -> {len(self._recipients)} recipients)"

    async def send(self, notification: Notification) -> None:
        message = build_message(notification, self._sender, self._recipients)
        implicit_tls = self._port == IMPLICIT_TLS_PORT
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=implicit_tls,
                start_tls=None if implicit_tls else self._starttls,
                timeout=self._timeout_s,
            )
        except aiosmtplib.SMTPException as exc:
            error = self._classify(exc)
        else:
            if not refused:
                return
            listed = "; ".join(f"{rcpt} ({resp.code} {resp.message})" for rcpt, resp in refused.items())
            error = PermanentDeliveryError(f"email: sent, but some recipients were refused: {self._redact(listed)}")
        raise error  # outside the except block: the aiosmtplib exception is not chained

    def _classify(self, exc: aiosmtplib.SMTPException) -> DeliveryError:
        where = f"email: {self._host}:{self._port}"
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients)
            permanent = bool(codes) and all(code >= 500 for code in codes)
            return self._error(permanent, f"{where} refused every recipient: {detail}")
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            what = "rejected the login" if isinstance(exc, aiosmtplib.SMTPAuthenticationError) else "answered"
            return self._error(exc.code >= 500, f"{where} {what} {exc.code}: {exc.message}")
        if isinstance(
            exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | aiosmtplib.SMTPTimeoutError
        ):
            return self._error(False, f"{where}: {type(exc).__name__}: {exc.message}")
        # What is left says the server lacks something the configuration needs (STARTTLS, AUTH, SMTPUTF8).
        return self._error(True, f"{where}: {exc.message}")

    def _error(self, permanent: bool, message: str) -> DeliveryError:
        kind = PermanentDeliveryError if permanent else DeliveryError
        return kind(self._redact(message))

    def _redact(self, text: str) -> str:
        return redact(text, [self._password] if self._password else [])
