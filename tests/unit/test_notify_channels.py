"""What each channel would send, built without any network: Slack blocks, PagerDuty events, email parts, the factory."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from sophia.config import NotifyConfig
from sophia.engine.clock import FakeClock
from sophia.engine.model import Notification
from sophia.notify import create_dispatcher, create_notifiers
from sophia.notify._redact import origin, redact, url_secrets
from sophia.notify.email import EmailNotifier, build_message, html_body, plain_body, subject
from sophia.notify.nop import NopNotifier
from sophia.notify.pagerduty import PagerDutyNotifier, events_for
from sophia.notify.slack import SlackNotifier
from sophia.notify.slack import build_message as slack_message

ROLLED_BACK = Notification(
    kind="rolled_back",
    run_id="r-42",
    version="v1.2.0",
    platform="local",
    summary="comms-mcp canary failed analysis",
    occurred_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    severity="critical",
    stage="canary-deploy",
    service="comms-mcp",
    reason="error rate 100% > 5% <b>",
    report_url="https://reports.example/runs/r-42",
)


def test_slack_message_has_the_facts_and_escapes_untrusted_text() -> None:
    body = slack_message(ROLLED_BACK)
    assert body["text"].startswith("Sophia v1.2.0 rolled back on local")
    types = [b["type"] for b in body["blocks"]]
    assert types == ["header", "section", "section", "section", "actions", "context"]
    fields = [f["text"] for f in body["blocks"][2]["fields"]]
    assert "*Run:*\nr-42" in fields
    assert "*Stage:*\ncanary-deploy" in fields
    assert "*Service:*\ncomms-mcp" in fields
    assert body["blocks"][3]["text"]["text"] == "*Reason:*\nerror rate 100% &gt; 5% &lt;b&gt;"
    assert body["blocks"][4]["elements"][0]["url"] == "https://reports.example/runs/r-42"


def test_slack_message_without_optional_parts() -> None:
    started = replace(ROLLED_BACK, kind="started", stage=None, service=None, reason=None, report_url=None)
    types = [b["type"] for b in slack_message(started)["blocks"]]
    assert types == ["header", "section", "section", "context"]


def test_slack_header_is_clipped_to_block_kit_limits() -> None:
    long = replace(ROLLED_BACK, version="v1.2.3-" + "a" * 200, reason="x" * 5000)
    body = slack_message(long)  # to_dict() validates every block against Slack's limits
    assert len(body["blocks"][0]["text"]["text"]) == 150


def test_a_local_report_path_is_text_not_a_link() -> None:
    local = replace(ROLLED_BACK, report_url=".sophia/runs/r-42/report.md")
    blocks = slack_message(local)["blocks"]
    assert [b["type"] for b in blocks][-2:] == ["section", "context"]  # no actions block with a bad URL
    assert "report: `.sophia/runs/r-42/report.md`" in blocks[-1]["elements"][0]["text"]
    [event] = events_for("KEY", local)
    assert "links" not in event
    assert event["payload"]["custom_details"]["report"] == ".sophia/runs/r-42/report.md"


@pytest.mark.parametrize(
    ("kind", "severity"), [("rolled_back", "error"), ("aborted", "error"), ("rollback_failed", "critical")]
)
def test_pagerduty_triggers_failures(kind: str, severity: str) -> None:
    [event] = events_for("KEY", replace(ROLLED_BACK, kind=kind))
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "sophia-r-42"
    assert event["payload"]["severity"] == severity
    assert event["payload"]["class"] == kind


def test_pagerduty_resolves_on_promotion_and_ignores_info() -> None:
    promoted = replace(ROLLED_BACK, kind="promoted", run_id="r-43", resolves=("r-41", "r-42", "r-41"))
    assert [(e["event_action"], e["dedup_key"]) for e in events_for("KEY", promoted)] == [
        ("resolve", "sophia-r-41"),
        ("resolve", "sophia-r-42"),
    ]
    assert events_for("KEY", replace(promoted, resolves=())) == []
    assert events_for("KEY", replace(ROLLED_BACK, kind="started")) == []
    pd = PagerDutyNotifier("KEY")
    assert not pd.wants(replace(ROLLED_BACK, kind="started"))
    assert pd.wants(ROLLED_BACK)


def test_email_parts() -> None:
    assert subject(ROLLED_BACK) == "[sophia] Sophia v1.2.0 rolled back on local (run r-42)"
    text = plain_body(ROLLED_BACK)
    assert "Run:       r-42" in text
    assert "Run report: https://reports.example/runs/r-42" in text
    assert "&lt;b&gt;" in html_body(ROLLED_BACK)
    message = build_message(ROLLED_BACK, "sophia@example.com", ["a@example.com", "b@example.com"])
    assert message["To"] == "a@example.com, b@example.com"
    assert message.get_content_type() == "multipart/alternative"


def test_redaction_helpers() -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    assert origin(url) == "https://hooks.slack.com"
    assert redact(f"POST {url} failed", url_secrets(url)) == "POST *** failed"
    assert redact("token XXXXSECRET leaked", url_secrets(url)) == "token *** leaked"
    assert redact("quoted p%40ss", ["p@ss"]) == "quoted ***"


def test_factory_is_nop_when_nothing_is_configured() -> None:
    [only] = create_notifiers(NotifyConfig())
    assert isinstance(only, NopNotifier)
    assert not only.wants(ROLLED_BACK)


def test_factory_builds_every_configured_channel() -> None:
    config = NotifyConfig(
        slack_webhook_url=SecretStr("https://hooks.slack.com/services/T/B/SECRET"),
        pagerduty_integration_key=SecretStr("ROUTINGKEY"),
        smtp_host="smtp.example.com",
        email_to=["ops@example.com"],
    )
    notifiers = create_notifiers(config)
    assert [type(n) for n in notifiers] == [SlackNotifier, PagerDutyNotifier, EmailNotifier]
    assert "SECRET" not in repr(notifiers)
    assert create_dispatcher(config, clock=FakeClock()).outstanding == 0


def test_factory_skips_email_without_recipients() -> None:
    [only] = create_notifiers(NotifyConfig(smtp_host="smtp.example.com"))
    assert isinstance(only, NopNotifier)
