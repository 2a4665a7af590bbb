"""``sophia dashboard`` as a user starts it: the real command on the Postgres run store, and its bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

from sophia.engine.events import Event, EventKind
from sophia.engine.record import Phase, RunRecord
from sophia.engine.store import RequestAction
from sophia.store.postgres import PostgresStore
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def _start(port: int, database_url: str, *extra: str, token: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"}
    env.pop("SOPHIA_DASHBOARD_TOKEN", None)
    if token:
        env["SOPHIA_DASHBOARD_TOKEN"] = token
    return subprocess.Popen(
        [sys.executable, "-m", "sophia.cli", "--config", str(REPO / "sophia.yaml"), "dashboard", "--port", str(port),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def _wait_up(url: str, proc: subprocess.Popen[str], timeout_s: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def _next_view(lines: AsyncIterator[str]) -> str:
    """The phase in the stream's next ``view`` message."""
    async for line in lines:
        if line.startswith("data: "):
            return str(json.loads(line.removeprefix("data: "))["phase"])
    raise AssertionError("the stream ended")


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return out, err


async def test_the_command_serves_the_postgres_run_store_on_loopback_live(database_url: str) -> None:
    store = PostgresStore(database_url)
    await store.ensure_schema()
    record = RunRecord("r-pg", "v2.0.0", "local", "local", datetime.now(UTC))
    await store.create(record)
    port = free_port()
    proc = _start(port, database_url)
    try:
        runs = _wait_up(f"http://127.0.0.1:{port}/api/runs", proc).json()["runs"]
        assert [r["run_id"] for r in runs] == ["r-pg"]
        async with asyncio.timeout(20), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            page = await client.get("/runs/r-pg")
            assert page.status_code == 200
            assert "/actions/" not in page.text  # no token: read-only
            assert (await client.post("/runs/r-pg/actions/abort", data={"csrf": "x"})).status_code == 404
            assert await store.pending_request("r-pg", frozenset(RequestAction)) is None
            await _watch_live(client, store, record)
    finally:
        await store.close()
        out, _ = _stop(proc)
    assert f"http://127.0.0.1:{port}/ (read-only)" in out


async def _watch_live(client: httpx.AsyncClient, store: PostgresStore, record: RunRecord) -> None:
    async with client.stream("GET", "/runs/r-pg/events") as stream:
        lines = stream.aiter_lines()
        assert await _next_view(lines) == "planned"
        record.phase, record.weights = Phase.RUNNING, {"comms-mcp": 10}
        await store.save(record, Event(EventKind.WEIGHTS_CHANGED, datetime.now(UTC), "r-pg", "canary 10 %"))
        assert await _next_view(lines) == "running"  # written by another process's store, pushed live


def test_a_short_token_and_a_taken_port_are_bad_input(database_url: str) -> None:
    short = _start(free_port(), database_url, token="short")
    _, err = short.communicate(timeout=60)
    assert short.returncode == 2
    assert "at least 16 characters" in err
    with socket.socket() as squatter:
        port = free_port()
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        taken = _start(port, database_url)
        _, err = taken.communicate(timeout=60)
    assert taken.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in err
