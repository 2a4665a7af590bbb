"""The lease across real OS processes: racing acquirers, a holder killed with SIGKILL, a holder paused with SIGSTOP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from sophia.engine.record import Phase
from sophia.store import ClaimState, LeaseHeldError
from sophia.store.postgres import PostgresStore
from tests.unit.test_store_records import event, planned

# A process that takes orders on stdin: "acquire ENV RUN TTL" answers "won GEN" or "held RUN"; "release ENV".
RACER = """
import asyncio, os, sys
from sophia.store import LeaseHeldError
from sophia.store.postgres import PostgresStore

async def main() -> None:
    name, leases = os.environ["RACER_NAME"], {}
    async with PostgresStore(os.environ["STORE_DSN"]) as store:
        print("ready", flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            order = line.split()
            if order[0] == "acquire":
                try:
                    lease = await store.acquire(order[1], order[2], name, float(order[3]))
                except LeaseHeldError as exc:
                    print("held", exc.run_id, flush=True)
                else:
                    leases[order[1]] = lease
                    print("won", lease.generation, flush=True)
            elif order[0] == "release":
                if order[1] in leases:
                    await store.release(leases.pop(order[1]))
                print("released", flush=True)

asyncio.run(main())
"""

# A holder at work: takes the lease for a running run, then commits a fenced step and renews, over and over.
WORKER = """
import asyncio, os, sys
from datetime import UTC, datetime
from sophia.engine.events import Event, EventKind
from sophia.engine.record import Phase, RunRecord
from sophia.store import LeaseLostError
from sophia.store.postgres import PostgresStore

async def main() -> None:
    run_id, ttl = sys.argv[1], float(sys.argv[2])
    async with PostgresStore(os.environ["STORE_DSN"]) as store:
        record = await store.load(run_id)
        lease = await store.acquire("production", run_id, f"worker pid {os.getpid()}", ttl)
        print("ready", flush=True)
        n = 0
        while True:
            n += 1
            record.stage("canary-deploy").data["n"] = n
            try:
                await store.save(record, Event(EventKind.NOTE, datetime.now(UTC), run_id, f"step {n}"), fence=lease)
                await store.renew(lease)
            except LeaseLostError as exc:
                print("lost:", exc, flush=True)
                sys.exit(3)
            print("saved", n, flush=True)
            await asyncio.sleep(0.05)

asyncio.run(main())
"""


@asynccontextmanager
async def process(
    database_url: str, script: str, *args: str, name: str = ""
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "STORE_DSN": database_url, "RACER_NAME": name}  # the DSN travels in the environment, not argv
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert await line(proc) == "ready"
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def line(proc: asyncio.subprocess.Process, timeout_s: float = 20) -> str:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    return raw.decode().strip()


async def tell(proc: asyncio.subprocess.Process, order: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(f"{order}\n".encode())
    await proc.stdin.drain()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(database_url) as opened:
        yield opened


async def test_two_processes_racing_for_the_lease_exactly_one_wins_every_time(
    store: PostgresStore, database_url: str
) -> None:
    rounds = 40
    async with process(database_url, RACER, name="A") as a, process(database_url, RACER, name="B") as b:
        wins = {"A": 0, "B": 0}
        for n in range(rounds):
            env = "production" if n % 2 else f"fresh-{n}"  # a reused row, and a row both try to create
            await asyncio.gather(tell(a, f"acquire {env} a-{n} 30"), tell(b, f"acquire {env} b-{n} 30"))
            answers = {"A": await line(a), "B": await line(b)}
            won = [who for who, answer in answers.items() if answer.startswith("won")]
            assert len(won) == 1, f"round {n}: {answers}"
            winner, loser = won[0], ({"A", "B"} - set(won)).pop()
            assert answers[loser] == f"held {winner.lower()}-{n}", f"round {n}: the loser must name the winner's run"
            wins[winner] += 1
            await asyncio.gather(tell(a, f"release {env}"), tell(b, f"release {env}"))
            assert (await line(a), await line(b)) == ("released", "released")
    assert sum(wins.values()) == rounds
    active = await store.active("production")
    assert active is None  # every round's run was unknown to the store and released: the environment is free


async def test_a_holder_killed_with_sigkill_is_taken_over_by_a_resume_within_two_seconds(
    store: PostgresStore, database_url: str
) -> None:
    record = planned("r1")
    record.phase = Phase.RUNNING
    await store.create(record)
    async with process(database_url, WORKER, "r1", "600") as worker:
        assert (await line(worker)).startswith("saved")
        killed = time.monotonic()
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
        lease = None
        while lease is None:  # the server notices the dead session within milliseconds; never waits for the ttl
            with contextlib.suppress(LeaseHeldError):
                lease = await store.acquire("production", "r1", "resumer", ttl_s=30)
            # Far below the 600 s ttl (the figure itself is measured by benchmarks/pipeline.py).
            assert time.monotonic() - killed < 10, "the dead holder was not detected"
            await asyncio.sleep(0.02 if lease is None else 0)
        decided = time.monotonic() - killed
    assert decided < 10
    assert lease.taken_over_from == f"worker pid {worker.pid}"
    assert lease.previous_run_id == "r1"


async def test_a_paused_holder_that_wakes_after_the_takeover_cannot_commit_anything(
    store: PostgresStore, database_url: str
) -> None:
    ttl = 0.6
    record = planned("r1")
    record.phase = Phase.RUNNING
    await store.create(record)
    async with process(database_url, WORKER, "r1", str(ttl)) as worker:
        for _ in range(3):
            assert (await line(worker)).startswith("saved")
        worker.send_signal(signal.SIGSTOP)  # its session stays connected: only the expiry can free the lease
        try:
            deadline = time.monotonic() + 10
            while (active := await store.active("production")) and active.state is ClaimState.RUNNING:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert active is not None
            assert (active.state, active.holder_connected) == (ClaimState.ORPHANED, True)
            lease = await store.acquire("production", "r1", "resumer", ttl_s=30)
            record = await store.load("r1")
            record.phase = Phase.ROLLING_BACK
            await store.save(record, event("r1", "resumed: rolling back"), fence=lease)
        finally:
            worker.send_signal(signal.SIGCONT)
        while (said := await line(worker)).startswith("saved"):  # a step that was already on the wire
            pass
        assert said.startswith("lost:")
        assert "taken over by resumer" in said
        assert await worker.wait() == 3
    assert (await store.load("r1")).phase is Phase.ROLLING_BACK
    assert (await store.events("r1"))[-1].message == "resumed: rolling back"
