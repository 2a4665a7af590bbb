"""Pure helpers of the services: SQL statement screening, JSON conversion, redaction, settings, payloads."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from sophia.services.analytics import to_json_value
from sophia.services.comms import SlackPostRequest
from sophia.services.crm import TaskCreateRequest
from sophia.services.faults import Faults
from sophia.services.generic import canonical_json, invoke_tool
from sophia.services.redact import RedactingFormatter, dsn_secrets, redact, short_reason
from sophia.services.settings import SERVICE_KINDS, ServiceSettings
from sophia.services.sqlguard import QueryRejected, screen

SERVICE_ENV = [
    "SOPHIA_SERVICE",
    "SOPHIA_SERVICE_KIND",
    "SOPHIA_VERSION",
    "SOPHIA_TRACK",
    "SOPHIA_GIT_SHA",
    "SOPHIA_ARTIFACT",
    "DATABASE_URL",
    "SOPHIA_FAULTS",
    "SOPHIA_BACKEND",
    "SOPHIA_API_TOKEN",
    "ANALYTICS_DATABASE_URL",
    "ANALYTICS_SCHEMAS",
    "SLACK_BOT_TOKEN",
    "SLACK_WEBHOOK_URL",
    "HUBSPOT_ACCESS_TOKEN",
]
TOKEN = "t0ken-" + "x" * 30


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICE_ENV:
        monkeypatch.delenv(name, raising=False)


SCHEMAS = ("public", "audit")


@pytest.mark.parametrize(
    ("sql", "params", "kind", "unqualified"),
    [
        ("SELECT 1", 0, "query", ()),
        ("  select * from accounts", 0, "query", ("accounts",)),
        ("\n\t-- a comment\nWITH x AS (SELECT 1) SELECT * FROM x", 0, "query", ("x",)),
        ("/* outer /* nested */ still comment */ values (1)", 0, "query", ()),
        ("((SELECT 1))", 0, "query", ()),
        ("table audit.events", 0, "query", ()),
        ("SELECT $1::int + $2", 2, "query", ()),
        ("SELECT '$1', '100%' AS pct", 0, "query", ()),
        ("EXPLAIN ANALYZE SELECT 1", 0, "explain", ()),
        ("show server_version", 0, "show", ()),
        ("SELECT 1;", 0, "query", ()),
    ],
)
def test_screen_accepts_one_reading_statement(sql: str, params: int, kind: str, unqualified: tuple[str, ...]) -> None:
    screened = screen(sql, params, SCHEMAS)
    assert (screened.kind, screened.unqualified) == (kind, unqualified)


@pytest.mark.parametrize(
    ("sql", "params", "reason"),
    [
        ("INSERT INTO t VALUES (1)", 0, "INSERT statements are refused"),
        ("update t set x=1", 0, "UPDATE statements are refused"),
        ("/* SELECT */ DROP TABLE t", 0, "DROP statements are refused"),
        ("COPY t TO PROGRAM 'x'", 0, "COPY statements are refused"),
        ("COMMIT", 0, "transaction control statements are refused"),
        ("SET transaction_read_only = off", 0, "SET statements are refused"),
        ("DO $$ BEGIN END $$", 0, "DO statements are refused"),
        ("EXPLAIN ANALYZE DELETE FROM t", 0, "EXPLAIN of anything but a SELECT"),
        ("", 0, "exactly one statement"),
        ("SELECT 1; SELECT 2", 0, "exactly one statement"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", 0, "data-modifying WITH"),
        ("SELECT * INTO t2 FROM t", 0, "SELECT INTO"),
        ("SELECT * FROM t FOR SHARE", 0, "row locks"),
        ("SELECT pg_catalog.PG_TERMINATE_BACKEND(1)", 0, "pg_terminate_backend"),
        ('SELECT "pg_advisory_lock"(1)', 0, "pg_advisory_lock"),
        ("SELECT * FROM pg_ls_dir('.')", 0, "pg_ls_dir"),
        ("SELECT query_to_xml('SELECT 1', true, true, '')", 0, "query_to_xml"),
        ("SELECT (SELECT set_config('role', 'none', true))", 0, "set_config"),
        ("SELECT * FROM sandbox.outbox", 0, "not sandbox"),
        ("SELECT * FROM pg_catalog.pg_authid", 0, "not pg_catalog"),
        ("SELECT * FROM other_db.public.t", 0, "can be read"),
        ("SELECT $1", 0, "uses 1 parameter(s)"),
        ("SELECT 1", 1, "uses 0 parameter(s)"),
        ("SELECT (", 0, "syntax error"),
    ],
)
def test_screen_refuses_with_the_reason(sql: str, params: int, reason: str) -> None:
    with pytest.raises(QueryRejected, match=re.escape(reason)) as raised:
        screen(sql, params, SCHEMAS)
    assert raised.value.status == 400


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (42, 42),
        (1.5, 1.5),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ("text", "text"),
        (Decimal("12.340"), "12.340"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2024-01-02T03:04:05+00:00"),
        (dt.time(13, 30), "13:30:00"),
        (dt.timedelta(days=1, hours=2), "1 day, 2:00:00"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (b"\x00\xff", "\\x00ff"),
        (memoryview(b"ab"), "\\x6162"),
        ([1, Decimal("2")], [1, "2"]),
        ({"a": [dt.date(2020, 1, 1)], 3: None}, {"a": ["2020-01-01"], "3": None}),
        (frozenset(), "frozenset()"),
    ],
)
def test_to_json_value(value: Any, expected: Any) -> None:
    converted = to_json_value(value)
    assert converted == expected
    json.dumps(converted, allow_nan=False)


@pytest.mark.parametrize(
    ("dsn", "hidden"),
    [
        ("postgresql://app:s3cret@db:5432/x", ["s3cret"]),
        ("postgresql://app:p%40ss@db/x", ["p%40ss", "p@ss"]),
        ("host=db user=app password=hunter2 dbname=x", ["hunter2"]),
        ("host=db password='two words' dbname=x", ["two words"]),
        ("postgresql://app@db/x", []),
    ],
)
def test_dsn_secrets_and_redaction(dsn: str, hidden: list[str]) -> None:
    secrets = dsn_secrets(dsn)
    assert dsn in secrets
    for secret in hidden:
        assert secret in secrets
        assert secret not in redact(f"failed: {secret} via {dsn}", secrets)


def test_short_reason_is_one_line_bounded_and_secret_free() -> None:
    error = RuntimeError("connection to db failed for pw=hunter2\n\tIs the server running?")
    assert short_reason(error, ["hunter2"]) == "connection to db failed for pw=***"
    assert len(short_reason(RuntimeError("x" * 500), [])) == 200
    assert short_reason(RuntimeError(""), []) == "RuntimeError"


def test_redacting_formatter_masks_messages_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s", ["hunter2"])
    try:
        raise ValueError("bad password hunter2")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "dsn %s", ("pw=hunter2",), sys.exc_info())
    text = formatter.format(record)
    assert "hunter2" not in text
    assert "pw=***" in text
    assert "bad password ***" in text


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPHIA_VERSION", "v1.1.0")
    monkeypatch.setenv("SOPHIA_TRACK", "canary")
    monkeypatch.setenv("SOPHIA_GIT_SHA", "abc123")
    monkeypatch.setenv("SOPHIA_ARTIFACT", "sha256:feed")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@h/d")
    monkeypatch.setenv("SOPHIA_FAULTS", "error_rate=0.5,latency_ms=200,crash=1")
    monkeypatch.setenv("SOPHIA_API_TOKEN", TOKEN)
    settings = ServiceSettings(service="comms-mcp", kind="comms")  # type: ignore[call-arg]
    assert (settings.version, settings.track, settings.git_sha, settings.artifact) == (
        "v1.1.0",
        "canary",
        "abc123",
        "sha256:feed",
    )
    assert settings.faults == Faults(error_rate=0.5, latency_ms=200, crash=True)
    assert settings.dsn == "postgresql://u:pw@h/d"
    assert "pw" in settings.secrets
    assert TOKEN in settings.secrets
    assert "pw@" not in repr(settings)


def test_settings_defaults_and_empty_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("SOPHIA_FAULTS", "")
    monkeypatch.setenv("SLACK_BOT_TOKEN", " ")
    monkeypatch.setenv("SOPHIA_API_TOKEN", TOKEN)
    settings = ServiceSettings()  # type: ignore[call-arg]  # the token is in the environment
    assert settings.dsn is None
    assert settings.slack_bot_token is None
    assert settings.faults == Faults()
    assert (settings.track, settings.backend, settings.analytics_schemas) == ("stable", "auto", ("public", "audit"))


def test_settings_require_a_long_enough_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="SOPHIA_API_TOKEN"):
        ServiceSettings()  # type: ignore[call-arg]
    monkeypatch.setenv("SOPHIA_API_TOKEN", "short")
    with pytest.raises(ValidationError, match="at least 24 characters"):
        ServiceSettings()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SOPHIA_FAULTS": "error_rate=2"}, "SOPHIA_FAULTS"),
        ({"SOPHIA_TRACK": "beta"}, "SOPHIA_TRACK"),
        ({"SOPHIA_VERSION": "1.0"}, "SOPHIA_VERSION"),
        ({"SOPHIA_BACKEND": "live"}, "SOPHIA_BACKEND"),
        ({"ANALYTICS_SCHEMAS": "public,pg_catalog"}, "ANALYTICS_SCHEMAS"),
        ({"SLACK_API_URL": "not a url"}, "SLACK_API_URL"),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str) -> None:
    monkeypatch.setenv("SOPHIA_API_TOKEN", TOKEN)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=field):
        ServiceSettings()  # type: ignore[call-arg]


def test_the_twelve_services_and_their_kinds() -> None:
    assert len(SERVICE_KINDS) == 12
    assert {k: v for k, v in SERVICE_KINDS.items() if v != "generic"} == {
        "comms-mcp": "comms",
        "crm-mcp": "crm",
        "analytics-mcp": "analytics",
    }


@pytest.mark.parametrize(
    ("channel", "valid"),
    [
        ("#general", True),
        ("#sophia-deploys_2", True),
        ("C0123ABCD", True),
        ("G12345678", True),
        ("D12345678", True),
        ("general", False),
        ("#General", False),
        ("#", False),
        ("#has space", False),
        ("X0123ABCD", False),
        ("C012", False),
        ("#" + "a" * 81, False),
    ],
)
def test_slack_channel_validation(channel: str, valid: bool) -> None:
    payload = {"channel": channel, "message": "hi", "username": "bot"}
    if valid:
        assert SlackPostRequest.model_validate(payload).channel == channel
    else:
        with pytest.raises(ValidationError, match="channel"):
            SlackPostRequest.model_validate(payload)


@pytest.mark.parametrize(
    ("payload", "error_field"),
    [
        ({"message": "", "username": "u"}, "message"),
        ({"message": "x" * 4001, "username": "u"}, "message"),
        ({"message": "x" * 4000, "username": ""}, "username"),
        ({"message": "x", "username": "u" * 81}, "username"),
    ],
)
def test_slack_message_and_username_bounds(payload: dict[str, str], error_field: str) -> None:
    with pytest.raises(ValidationError, match=error_field):
        SlackPostRequest.model_validate({"channel": "#c", **payload})


@pytest.mark.parametrize(("given", "normalised"), [("low", "LOW"), ("Medium", "MEDIUM"), (" HIGH ", "HIGH")])
def test_task_priority_is_case_insensitive(given: str, normalised: str) -> None:
    task = TaskCreateRequest.model_validate({"subject": "s", "priority": given, "assignee": "a"})
    assert task.priority == normalised


def test_task_priority_outside_the_three_levels_is_refused() -> None:
    with pytest.raises(ValidationError, match="priority"):
        TaskCreateRequest.model_validate({"subject": "s", "priority": "URGENT", "assignee": "a"})


def test_invoke_digest_is_deterministic_and_depends_on_everything() -> None:
    assert canonical_json({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'
    first = invoke_tool("mcp-research", "search", {"q": "x", "k": 3})
    assert first == invoke_tool("mcp-research", "search", {"k": 3, "q": "x"})
    assert first["digest"].startswith("sha256:")
    assert first["argument_keys"] == ["k", "q"]
    assert first["digest"] != invoke_tool("mcp-context", "search", {"q": "x", "k": 3})["digest"]
    assert first["digest"] != invoke_tool("mcp-research", "search", {"q": "y", "k": 3})["digest"]
