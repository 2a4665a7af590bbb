"""Pure helpers of the services: SQL statement screening, JSON conversion, redaction, settings, payloads."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from sophia.services.analytics import QueryRejected, check_reading_statement, leading_keyword, to_json_value
from sophia.services.comms import SlackPostRequest
from sophia.services.crm import TaskCreateRequest
from sophia.services.faults import Faults
from sophia.services.generic import canonical_json, invoke_tool
from sophia.services.redact import RedactingFormatter, dsn_secrets, redact, short_reason
from sophia.services.settings import SERVICE_KINDS, ServiceSettings

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
]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("SELECT 1", "SELECT"),
        ("  select 1", "SELECT"),
        ("\n\t-- a comment\nWITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
        ("/* outer /* nested */ still comment */ values (1)", "VALUES"),
        ("((SELECT 1))", "SELECT"),
        ("table sandbox.outbox", "TABLE"),
        ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN"),
        ("show server_version", "SHOW"),
        ("DELETE FROM t", "DELETE"),
        ("/* SELECT */ DROP TABLE t", "DROP"),
        ("-- SELECT\nINSERT INTO t VALUES (1)", "INSERT"),
        ("", ""),
        ("-- only a comment", ""),
        ("/* unterminated", ""),
        ("; SELECT 1", ""),
    ],
)
def test_leading_keyword(sql: str, keyword: str) -> None:
    assert leading_keyword(sql) == keyword


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "update t set x=1",
        "DELETE FROM t",
        "DROP TABLE t",
        "COPY t TO PROGRAM 'x'",
        "CREATE TABLE t (x int)",
        "COMMIT",
        "SET transaction_read_only = off",
        "CALL p()",
        "DO $$ BEGIN END $$",
        "",
    ],
)
def test_statements_that_do_not_only_read_are_refused_before_reaching_the_database(sql: str) -> None:
    with pytest.raises(QueryRejected, match="read-only endpoint") as raised:
        check_reading_statement(sql)
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
    monkeypatch.setenv("SOPHIA_API_TOKEN", "tok")
    settings = ServiceSettings(service="comms-mcp", kind="comms")
    assert (settings.version, settings.track, settings.git_sha, settings.artifact) == (
        "v1.1.0",
        "canary",
        "abc123",
        "sha256:feed",
    )
    assert settings.faults == Faults(error_rate=0.5, latency_ms=200, crash=True)
    assert settings.dsn == "postgresql://u:pw@h/d"
    assert "pw" in settings.secrets
    assert "tok" in settings.secrets
    assert "pw@" not in repr(settings)


def test_settings_defaults_and_empty_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("SOPHIA_FAULTS", "")
    settings = ServiceSettings()
    assert settings.dsn is None
    assert settings.faults == Faults()
    assert (settings.track, settings.backend, settings.api_token) == ("stable", "sandbox", None)


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SOPHIA_FAULTS": "error_rate=2"}, "SOPHIA_FAULTS"),
        ({"SOPHIA_TRACK": "beta"}, "SOPHIA_TRACK"),
        ({"SOPHIA_VERSION": "1.0"}, "SOPHIA_VERSION"),
        ({"SOPHIA_BACKEND": "live"}, "SOPHIA_BACKEND"),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=field):
        ServiceSettings()


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
