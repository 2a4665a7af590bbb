"""The audit trail of 001_audit.sql on a real Postgres: append-only, hash-chained, tampering detected."""

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sophia.db.audit import append_audit_event, append_audit_event_sync, verify_audit_chain
from tests.integration.test_db_cli import sophia
from tests.integration.test_db_runner import REPO, runner

CONFIG = "platform: local\nprofile: local\nservices:\n  - {name: mcp-research}\nprofiles:\n  local: {}\n"


@pytest.fixture
async def audited(database_url: str) -> str:
    await runner(database_url, REPO / "ops" / "sql").migrate()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for i in range(6):
            await append_audit_event(
                conn,
                "sophia-release",
                "deploy.stage",
                f"mcp-research#{i}",
                {"stage": "canary-deploy", "i": i},
                "success" if i % 3 else "failure",
                f"req-{i}",
            )
    return database_url


def as_superuser(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def audit_verify(tmp_path: Path, url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    (tmp_path / "sophia.yaml").write_text(CONFIG)
    result = sophia(tmp_path, "audit", "verify", "--json", *args, DATABASE_URL=url)
    return result.returncode, json.loads(result.stdout), result.stderr


async def check(url: str, **kwargs: Any) -> Any:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await verify_audit_chain(conn, **kwargs)


async def test_an_intact_chain_verifies(audited: str, tmp_path: Path) -> None:
    report = await check(audited)
    assert report.ok
    assert report.rows == 6
    assert report.head_seq == 6
    code, document, _ = audit_verify(tmp_path, audited)
    assert code == 0
    assert document["ok"] is True
    assert document["head"]["seq"] == 6


def test_editing_a_row_as_superuser_with_the_trigger_disabled_is_detected(audited: str, tmp_path: Path) -> None:
    as_superuser(
        audited,
        "ALTER TABLE audit.events DISABLE TRIGGER events_append_only",
        "UPDATE audit.events SET result = 'success' WHERE seq = 4",  # was 'failure'
        "ALTER TABLE audit.events ENABLE TRIGGER events_append_only",
    )
    code, document, stderr = audit_verify(tmp_path, audited)
    assert code == 1
    assert document["problems"] == ["row 4: content does not match its hash (edited?)"]
    assert stderr == ""


async def test_deleting_rows_is_detected_in_the_middle_and_at_the_end(audited: str) -> None:
    as_superuser(
        audited,
        "ALTER TABLE audit.events DISABLE TRIGGER USER",
        "DELETE FROM audit.events WHERE seq IN (2, 6)",
        "ALTER TABLE audit.events ENABLE TRIGGER USER",
    )
    problems = (await check(audited)).problems
    assert "rows 2..2 are missing (deleted?)" in problems
    assert "row 3: prev_hash does not match the hash of row 1" in problems
    assert any(p.startswith("chain head says row 6 is the newest but the table ends at row 5") for p in problems)


async def test_a_disabled_trigger_is_reported(audited: str) -> None:
    as_superuser(audited, "ALTER TABLE audit.events DISABLE TRIGGER events_append_only")
    assert (await check(audited)).problems == ("trigger events_append_only is disabled",)


async def test_a_consistently_rewritten_chain_is_caught_by_an_anchor(audited: str) -> None:
    anchor = ((await check(audited)).head_seq, (await check(audited)).head_hash)
    recompute = """
        UPDATE audit.events e SET prev_hash = x.prev, hash = audit.event_hash(x.prev, e.seq, e.occurred_at, e.actor,
               e.action, e.target, e.payload, e.result, e.request_id)
          FROM (SELECT seq, lag(hash, 1, repeat('0', 64)) OVER (ORDER BY seq) AS prev FROM audit.events) x
         WHERE e.seq = x.seq AND e.seq = {seq}
    """
    statements = [
        "ALTER TABLE audit.events DISABLE TRIGGER USER",
        "ALTER TABLE audit.chain_head DISABLE TRIGGER USER",
        "UPDATE audit.events SET target = 'rewritten' WHERE seq = 2",
    ]
    statements += [recompute.format(seq=seq) for seq in range(2, 7)]  # one row at a time: each needs the new prev
    statements += [
        "UPDATE audit.chain_head SET hash = (SELECT hash FROM audit.events WHERE seq = 6)",
        "ALTER TABLE audit.events ENABLE TRIGGER USER",
        "ALTER TABLE audit.chain_head ENABLE TRIGGER USER",
    ]
    as_superuser(audited, *statements)
    assert (await check(audited)).ok  # a full rewrite is self-consistent...
    report = await check(audited, anchor=anchor)
    assert not report.ok  # ...but not with a head recorded earlier elsewhere
    assert report.problems[0].startswith("anchor 6:")


def test_the_anchor_option_of_the_cli(audited: str, tmp_path: Path) -> None:
    _, document, _ = audit_verify(tmp_path, audited)
    head = f"{document['head']['seq']}:{document['head']['hash']}"
    assert audit_verify(tmp_path, audited, "--anchor", head)[0] == 0
    assert audit_verify(tmp_path, audited, "--anchor", "6:" + "0" * 64)[0] == 1
    assert audit_verify(tmp_path, audited, "--anchor", "six")[0] == 2


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.events SET actor = 'someone else' WHERE seq = 1",
        "DELETE FROM audit.events WHERE seq = 1",
        "TRUNCATE audit.events",
        "UPDATE audit.chain_head SET seq = 0",
        "DELETE FROM audit.chain_head",
    ],
)
def test_the_trail_is_append_only_even_for_its_owner(audited: str, statement: str) -> None:
    with psycopg.connect(audited, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_roles_writer_appends_analytics_reads(audited: str) -> None:
    with psycopg.connect(audited, autocommit=True) as conn:
        conn.execute("SET ROLE sophia_audit_writer")
        event = append_audit_event_sync(conn, "crm-mcp", "task.create", "hubspot", {}, "success")
        assert event.seq == 7
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE audit.events SET actor = 'x' WHERE seq = 1")
    with psycopg.connect(audited) as conn:
        conn.execute("SET ROLE sophia_analytics")
        assert conn.execute("SELECT count(*) FROM audit.events").fetchone() == (7,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO audit.events (actor, action, result) VALUES ('a', 'b', 'success')")


def test_concurrent_appends_make_one_unbroken_chain(audited: str) -> None:
    def worker(name: str) -> None:
        with psycopg.connect(audited, autocommit=True) as conn:
            for i in range(25):
                append_audit_event_sync(conn, name, "probe", "svc", {"i": i}, "success")

    threads = [threading.Thread(target=worker, args=(f"worker-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = asyncio.run(check(audited))
    assert report.ok, report.problems
    assert report.rows == 106


async def test_secrets_never_enter_the_trail(audited: str) -> None:
    async with await psycopg.AsyncConnection.connect(audited, autocommit=True) as conn:
        await append_audit_event(
            conn,
            "sophia",
            "notify",
            "slack",
            {"webhook": {"api_key": "k-123", "Password": "p-456"}, "ok": True},
            "success",
        )
        row = await (await conn.execute("SELECT payload::text FROM audit.events ORDER BY seq DESC LIMIT 1")).fetchone()
    assert row is not None
    assert "k-123" not in row[0]
    assert "p-456" not in row[0]
    with pytest.raises(ValueError, match="audit result must be one of"):
        async with await psycopg.AsyncConnection.connect(audited, autocommit=True) as conn:
            await append_audit_event(conn, "sophia", "x", "y", {}, "maybe")


def test_no_audit_schema_exits_2(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "sophia.yaml").write_text(CONFIG)
    result = sophia(tmp_path, "audit", "verify", DATABASE_URL=database_url)
    assert result.returncode == 2
    assert "no audit schema" in result.stderr
