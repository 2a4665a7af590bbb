"""The dashboard over real HTTP: pages, the JSON API, the live stream, and the token + CSRF guard on its buttons."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sophia.dashboard.app import create_app
from sophia.engine import run
from sophia.engine.events import Event, EventKind
from sophia.engine.model import PoolStatus, Track
from sophia.engine.record import Outcome, Phase, RunRecord, StageStatus
from sophia.engine.store import RequestAction
from sophia.store import MemoryStore
from tests.fakes.engine_world import world
from tests.fakes.web import serving

TOKEN = "correct-horse-battery-staple"
ALL = frozenset(RequestAction)


async def _store_with_runs() -> MemoryStore:
    store = MemoryStore()
    now = datetime.now(UTC)
    await store.create(RunRecord("r-old", "v1.0.0", "memory", "test", now, phase=Phase.PROMOTED,
                                 outcome=Outcome.PROMOTED, finished_at=now))  # fmt: skip
    await store.create(RunRecord("r-live", "v1.1.0", "memory", "test", now))
    return store


@pytest.fixture
async def store() -> MemoryStore:
    return await _store_with_runs()


@pytest.fixture
async def readonly(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(store, poll_s=0.02)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


@pytest.fixture
async def guarded(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(store, token=TOKEN, poll_s=0.02)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_the_runs_page_and_api_list_every_run_newest_first(readonly: httpx.AsyncClient) -> None:
    page = await readonly.get("/")
    assert page.status_code == 200
    assert 'href="/runs/r-live"' in page.text
    assert 'href="/runs/r-old"' in page.text
    runs = (await readonly.get("/api/runs")).json()["runs"]
    assert {r["run_id"]: r["phase"] for r in runs} == {"r-live": "planned", "r-old": "promoted"}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/runs?limit=abc", 400),
        ("/api/runs?limit=0", 400),
        ("/runs/bad%20id", 400),
        ("/runs/nope", 404),
        ("/api/runs/nope", 404),
        ("/runs/nope/events", 404),
    ],
)
async def test_bad_input_gets_a_clear_4xx(readonly: httpx.AsyncClient, path: str, status: int) -> None:
    response = await readonly.get(path)
    assert response.status_code == status
    assert response.text.strip()


async def test_another_host_name_is_refused_against_dns_rebinding(readonly: httpx.AsyncClient) -> None:
    response = await readonly.get("/", headers={"host": "attacker.example"})
    assert response.status_code == 400


async def test_without_a_token_the_buttons_are_absent_and_their_endpoints_change_nothing(
    readonly: httpx.AsyncClient, store: MemoryStore
) -> None:
    page = await readonly.get("/runs/r-live")
    assert page.status_code == 200
    assert "/actions/" not in page.text
    assert "/login" not in page.text
    for action in ("promote", "abort", "rollback"):
        response = await readonly.post(f"/runs/r-live/actions/{action}", data={"csrf": "x"})
        assert response.status_code == 404
    assert (await readonly.post("/login", data={"token": TOKEN})).status_code == 404
    assert await store.pending_request("r-live", ALL) is None


async def _sign_in(client: httpx.AsyncClient) -> str:
    response = await client.post("/login", data={"token": TOKEN, "next": "/runs/r-live"})
    assert response.status_code == 303
    assert response.headers["location"] == "/runs/r-live"
    page = await client.get("/runs/r-live")
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, "a signed-in operator's page carries the CSRF token in its forms"
    return found.group(1)


async def test_a_wrong_token_does_not_sign_in(guarded: httpx.AsyncClient) -> None:
    response = await guarded.post("/login", data={"token": "not-the-token-at-all"})
    assert response.status_code == 403
    assert "sophia_dashboard_session" not in response.cookies


async def test_an_action_needs_the_session_and_its_csrf_token(guarded: httpx.AsyncClient, store: MemoryStore) -> None:
    page = await guarded.get("/runs/r-live")
    assert 'action="/login"' in page.text
    assert "/actions/" not in page.text
    refused = await guarded.post("/runs/r-live/actions/rollback", data={"csrf": "0" * 64})
    assert refused.status_code == 403
    csrf = await _sign_in(guarded)
    assert (await guarded.post("/runs/r-live/actions/rollback", data={"reason": "no csrf"})).status_code == 403
    assert (await guarded.post("/runs/r-live/actions/rollback", data={"csrf": "0" * 64})).status_code == 403
    cross = await guarded.post("/runs/r-live/actions/rollback", data={"csrf": csrf},
                               headers={"origin": "http://attacker.example"})  # fmt: skip
    assert cross.status_code == 403
    assert (await guarded.post("/runs/r-live/actions/rollback", content=b"{}",
                               headers={"content-type": "application/json"})).status_code == 415  # fmt: skip
    assert await store.pending_request("r-live", ALL) is None  # nothing refused left a request

    done = await guarded.post("/runs/r-live/actions/rollback", data={"csrf": csrf, "reason": "error budget"})
    assert done.status_code == 202
    request = await store.pending_request("r-live", ALL)
    assert request is not None
    assert (request.action, request.requested_by, request.reason) == (RequestAction.ROLLBACK, "dashboard",
                                                                      "error budget")  # fmt: skip


async def test_unknown_actions_and_ended_runs_are_refused(guarded: httpx.AsyncClient, store: MemoryStore) -> None:
    csrf = await _sign_in(guarded)
    assert (await guarded.post("/runs/r-live/actions/delete", data={"csrf": csrf})).status_code == 404
    assert (await guarded.post("/runs/nope/actions/abort", data={"csrf": csrf})).status_code == 404
    assert (await guarded.post("/runs/r-old/actions/abort", data={"csrf": csrf})).status_code == 409
    assert await store.pending_request("r-old", ALL) is None


async def _messages(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, object]]]:
    kind = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind is not None:
            yield kind, json.loads(line.removeprefix("data: "))


async def test_the_stream_sends_what_the_run_store_records_then_ends(
    readonly: httpx.AsyncClient, store: MemoryStore
) -> None:
    record = await store.load("r-live")
    async with asyncio.timeout(10), readonly.stream("GET", "/runs/r-live/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = _messages(response)
        kind, first = await anext(messages)
        assert kind == "view"
        assert first["phase"] == "planned"
        assert 'data-stage="lint-test" data-status="pending"' in first["panels"]["stages"]  # type: ignore[index]

        record.phase = Phase.RUNNING
        record.stage("lint-test").status = StageStatus.RUNNING
        record.stage("lint-test").started_at = datetime.now(UTC)
        await store.save(record, Event(EventKind.STAGE_STARTED, datetime.now(UTC), "r-live", "lint-test", "lint-test"))
        kind, second = await anext(messages)
        assert kind == "view"
        assert second["phase"] == "running"
        assert 'data-stage="lint-test" data-status="running"' in second["panels"]["stages"]  # type: ignore[index]

        record.phase, record.outcome = Phase.ABORTED, Outcome.ABORTED
        await store.save(record, Event(EventKind.RUN_FINISHED, datetime.now(UTC), "r-live", "aborted"))
        rest = [m async for m in messages]
    assert [k for k, _ in rest] == ["view", "end"]
    assert rest[-1][1] == {"phase": "aborted"}


async def test_a_faulted_run_shows_the_canary_climb_the_decision_and_the_rollback(
    repo_root: Path, tmp_path: Path
) -> None:
    w = await world(repo_root, tmp_path, faults=("comms-mcp:error_rate=0.3",))
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    async with serving(create_app(w.store)) as url, httpx.AsyncClient(base_url=url) as client:
        view = (await client.get("/api/runs/r-test")).json()
        page = (await client.get("/runs/r-test")).text
    assert view["phase"] == "rolled_back"
    assert view["rollback"]["reason"].startswith("canary-deploy")
    comms = view["charts"]["comms-mcp"]
    assert max(r for r in comms["canary_error_rate"] if r is not None) > 0.1
    assert all(r in (None, 0) for r in comms["stable_error_rate"])
    assert comms["llr"][-1] >= comms["fail_bound"] or comms["severe_llr"][-1] >= comms["severe_fail_bound"]
    assert [d["decision"] for d in view["decisions"]] == ["fail"]
    assert {s["name"]: s["verdict"] for s in view["services"]}["comms-mcp"] == "fail"
    assert view["health"]["targets"] == 24  # both tracks of twelve services
    assert view["health"]["probes"] > 0
    assert [e["kind"] for e in view["log"]][-1] == "run_finished"
    assert 'id="rollback"' in page
    assert "/actions/" not in page


async def test_a_readiness_breach_shows_its_findings(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path, readiness={"max_memory_mib": 512})
    w.platform.memory_mib = {("comms-mcp", Track.STABLE): 600.0}
    w.pools.reported["crm-mcp"] = [PoolStatus("main", 4, 4, 7)]
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    async with serving(create_app(w.store)) as url, httpx.AsyncClient(base_url=url) as client:
        view = (await client.get("/api/runs/r-test")).json()
        page = (await client.get("/runs/r-test")).text
    readiness = view["readiness"]
    assert readiness["pools"]["crm-mcp"] == [{"pool": "main", "size": 4, "in_use": 4, "waiting": 7}]
    assert readiness["performance_notes"] == ["no baseline: first release"]
    assert 'id="panel-readiness"' in page
    assert "<td>crm-mcp</td><td>main</td>" in page
    assert "<td>comms-mcp</td><td>stable</td><td>600.0 MiB</td>" in page
    assert "<li>no baseline: first release</li>" in page


async def test_the_rollback_button_stops_a_live_run_through_its_session(repo_root: Path, tmp_path: Path) -> None:
    """Pressed while the run's process is executing it (at the manual gate), the request makes that process roll
    every service back, as `sophia rollback` would."""
    from sophia.engine.session import SessionPolicy, drive
    from tests.fakes.engine_world import versions

    w = await world(repo_root, tmp_path, canary={"steps": [10], "manual_gate": True})
    session = SessionPolicy("test-env", "holder-1", ttl_s=5, heartbeat_s=0.05, request_poll_s=0.02)
    executing = asyncio.create_task(drive(w.ctx, session, lambda: run.execute(w.ctx)))
    async with asyncio.timeout(20):
        while not any("waiting for approval" in e.message for e in w.events):
            await asyncio.sleep(0.01)
    async with serving(create_app(w.store, token=TOKEN)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/login", data={"token": TOKEN, "next": "/runs/r-test"})
        assert response.status_code == 303
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', (await client.get("/runs/r-test")).text)
        assert csrf
        pressed = await client.post("/runs/r-test/actions/rollback", data={"csrf": csrf.group(1)})
        assert pressed.status_code == 202
        async with asyncio.timeout(20):
            assert await executing is Outcome.ROLLED_BACK
    assert versions(w.platform) == {("v1.0.0", None, 0)}
    assert w.record.rollback is not None
    assert w.record.rollback.reason == "rollback requested by dashboard: rollback from the dashboard"
