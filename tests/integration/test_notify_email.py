"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sophia.engine.clock import FakeClock
from sophia.engine.dispatch import DeliveryError, NotificationDispatcher, PermanentDeliveryError
from sophia.engine.model import Notification
from sophia.notify.email import EmailNotifier
from tests.fakes.receivers import SmtpReceiver

PASSWORD = "smtp-PASSWORD-s3cret"
RECIPIENTS = ["ops@example.com", "release@example.com"]

NOTE = Notification(
    kind="rollback_failed",
    run_id="r-9",
    version="v1.2.0",
    platform="local",
    summary="rollback of full-rollout did not complete",
    occurred_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    severity="critical",
    stage="full-rollout",
    service="analytics-mcp",
    reason="router <analytics-mcp> did not accept weight 0",
    report_url="https://reports.example/runs/r-9",
)


def channel(smtp: SmtpReceiver, **overrides: object) -> EmailNotifier:
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": smtp.port,
        "sender": "sophia@example.com",
        "recipients": RECIPIENTS,
        "starttls": False,
        "timeout_s": 5.0,
    } | overrides
    return EmailNotifier(**settings)  # type: ignore[arg-type]


async def test_sends_a_plain_text_and_html_summary_to_every_recipient() -> None:
    with SmtpReceiver() as smtp:
        await channel(smtp).send(NOTE)
        [mail] = smtp.messages
    assert mail.mail_from == "sophia@example.com"
    assert mail.rcpt_tos == tuple(RECIPIENTS)
    message = mail.message
    assert message["Subject"] == "[sophia] Sophia v1.2.0 ROLLBACK FAILED on local (run r-9)"
    assert message["To"] == "ops@example.com, release@example.com"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    plain = text.get_content()
    assert "rollback of full-rollout did not complete" in plain
    assert "Stage:     full-rollout" in plain
    assert "router <analytics-mcp> did not accept weight 0" in plain
    assert "Run report: https://reports.example/runs/r-9" in plain
    markup = html.get_content()
    assert "router &lt;analytics-mcp&gt; did not accept weight 0" in markup
    assert '<a href="https://reports.example/runs/r-9">' in markup


async def test_logs_in_when_credentials_are_configured() -> None:
    with SmtpReceiver(credentials=("sophia", PASSWORD)) as smtp:
        await channel(smtp, username="sophia", password=PASSWORD).send(NOTE)
        assert len(smtp.messages) == 1


async def test_a_rejected_login_is_permanent_and_hides_the_password() -> None:
    with SmtpReceiver(credentials=("sophia", "another-password")) as smtp:
        with pytest.raises(PermanentDeliveryError, match="rejected the login 535") as caught:
            await channel(smtp, username="sophia", password=PASSWORD).send(NOTE)
        assert smtp.messages == []
    assert PASSWORD not in str(caught.value)
    assert caught.value.__context__ is None


@pytest.mark.parametrize(
    ("overrides", "missing"), [({"starttls": True}, "STARTTLS"), ({"username": "sophia", "password": PASSWORD}, "AUTH")]
)
async def test_a_server_without_a_needed_extension_is_permanent(overrides: dict[str, object], missing: str) -> None:
    with SmtpReceiver() as smtp:
        with pytest.raises(PermanentDeliveryError, match=f"{missing} extension (is )?not supported") as caught:
            await channel(smtp, **overrides).send(NOTE)
        assert smtp.messages == []
    assert PASSWORD not in str(caught.value)


async def test_recipients_refused_for_good_is_permanent() -> None:
    with SmtpReceiver() as smtp:
        smtp.collector.refuse_rcpt = dict.fromkeys(RECIPIENTS, "550 5.1.1 no such user")
        with pytest.raises(PermanentDeliveryError, match="refused every recipient"):
            await channel(smtp).send(NOTE)


async def test_some_recipients_refused_is_reported_after_sending() -> None:
    with SmtpReceiver() as smtp:
        smtp.collector.refuse_rcpt = {"release@example.com": "550 5.1.1 no such user"}
        with pytest.raises(PermanentDeliveryError, match=r"release@example.com \(550"):
            await channel(smtp).send(NOTE)
        [mail] = smtp.messages
        assert mail.rcpt_tos == ("ops@example.com",)


async def test_a_temporary_refusal_is_retried_and_then_delivered() -> None:
    with SmtpReceiver() as smtp:
        smtp.collector.data_replies = ["451 4.3.0 try again later"]
        with pytest.raises(DeliveryError) as caught:
            await channel(smtp).send(NOTE)
        assert not isinstance(caught.value, PermanentDeliveryError)

        smtp.collector.data_replies = ["451 4.3.0 try again later"]
        d = NotificationDispatcher([channel(smtp)], FakeClock(), attempt_timeout_s=5, max_attempts=3, backoff_s=0.001)
        d.publish(replace(NOTE, kind="promoted"))
        [record] = await d.drain(timeout_s=10)
        assert (record.channel, record.delivered, record.attempts) == ("email", True, 2)
        assert record.last_error is not None
        assert "451" in record.last_error
        assert len(smtp.messages) == 1


async def test_an_unreachable_server_is_transient() -> None:
    with SmtpReceiver() as smtp:
        port = smtp.port
    with pytest.raises(DeliveryError) as caught:
        await EmailNotifier(
            host="127.0.0.1", port=port, sender="s@example.com", recipients=RECIPIENTS, starttls=False
        ).send(NOTE)
    assert not isinstance(caught.value, PermanentDeliveryError)
