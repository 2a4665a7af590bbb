"""What durability costs: the run store's write-ahead save, event append and lease calls on the embedded Postgres.

Starts its own embedded Postgres (the same server the local platform uses) in a temporary folder, times each call
sequentially from one client (as the run loop makes them), and estimates the overhead of one full pipeline: about
40 write-ahead saves (each carrying its event) plus 100 further events, measured end to end. The last line is the
summary the docs quote.

    .venv/bin/python benchmarks/store.py [--n 400]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from sophia.engine.events import Event, EventKind
from sophia.engine.record import Phase, RollbackRecord, RunRecord, StageStatus
from sophia.platforms.local import postgres as pg
from sophia.platforms.local.postgres import EmbeddedPostgres
from sophia.store import MemoryStore, Store
from sophia.store.codec import record_json
from sophia.store.postgres import PostgresStore

SAVES, EVENTS = 40, 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def realistic_record(run_id: str) -> RunRecord:
    """A finished run with every stage filled in and twelve services: the largest record a pipeline writes."""
    t0 = datetime.now(UTC)
    record = RunRecord(run_id, "2.4.0", "local", "local", t0, actor="ci:octocat")
    for i, stage in enumerate(record.stages):
        stage.status, stage.budget_s = StageStatus.PASSED, 60.0
        stage.started_at, stage.finished_at = t0 + timedelta(seconds=i), t0 + timedelta(seconds=i + 1)
        stage.detail = "all checks passed"
        stage.data = {
            "weights": [0, 10, 25, 50, 100],
            "checks": [{"service": f"svc-{j}", "ok": True} for j in range(12)],
        }
    record.services = [
        {"name": f"svc-{j}", "stable_version": "2.4.0", "canary_version": None, "canary_weight": 0} for j in range(12)
    ]
    record.rollback = RollbackRecord("not needed", t0)
    record.phase = Phase.RUNNING
    return record


def note(run_id: str, n: int) -> Event:
    return Event(EventKind.OBSERVATION, datetime.now(UTC), run_id, f"observation {n}", "canary-deploy", {"n": n})


async def timed(n: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def line(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{name:<44} median {statistics.median(samples):7.3f} ms   p95 {p95:7.3f} ms   (n={len(samples)})"


async def pipeline(store: Store, run_id: str) -> float:
    """One pipeline's store traffic, end to end: the create, 40 saves with their events, 100 more events."""
    record = realistic_record(run_id)
    started = time.perf_counter()
    await store.create(record, note(run_id, 0))
    for i in range(SAVES):
        await store.save(record, note(run_id, i))
    for i in range(EVENTS):
        await store.append(note(run_id, i))
    return (time.perf_counter() - started) * 1000


async def measure(dsn: str, n: int) -> float:
    opened = time.perf_counter()
    async with PostgresStore(dsn) as store:
        print(f"{'first use (connect, schema check, pool)':<44} {(time.perf_counter() - opened) * 1000:7.1f} ms")
        record = realistic_record("bench")
        await store.create(record)
        print(f"{'record JSON size':<44} {len(record_json(record).encode()) / 1024:7.1f} KiB")
        lease = await store.acquire("bench", "bench", "benchmark", ttl_s=60)
        saves = await timed(n, lambda i: store.save(record, note("bench", i)))
        print(line("save(record, event)  [write-ahead]", saves))
        fenced = await timed(n, lambda i: store.save(record, note("bench", i), fence=lease))
        print(line("save(record, event, fence=lease)", fenced))
        print(line("save(record)", await timed(n, lambda i: store.save(record))))
        print(line("append(event)", await timed(n, lambda i: store.append(note("bench", i)))))
        print(line("load(run_id)", await timed(n, lambda i: store.load("bench"))))
        print(line("renew(lease)", await timed(n, lambda i: store.renew(lease))))
        await store.release(lease)

        async def cycle(i: int) -> None:
            await store.release(await store.acquire("cycle", f"c{i}", "benchmark", ttl_s=60))

        print(line("acquire + release (new lease session)", await timed(max(50, n // 4), cycle)))

        async def connect(i: int) -> None:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            await conn.close()

        connect_ms = await timed(max(50, n // 4), connect)
        print(line("connect + close (per-call cost without pool)", connect_ms))
        walls = [await pipeline(store, f"pipe-{k}") for k in range(7)]
        memory = [await pipeline(MemoryStore(), f"mem-{k}") for k in range(7)]
    wall = statistics.median(walls)
    in_memory = statistics.median(memory)
    print(
        f"{'pipeline (create + 40 saves + 100 events)':<44} median {wall:7.1f} ms   (memory store {in_memory:.1f} ms)"
    )
    print(f"{'  same without a pool, estimated':<44} +{(SAVES + EVENTS + 1) * statistics.median(connect_ms):6.0f} ms")
    return wall


class DurablePostgres(EmbeddedPostgres):
    """The embedded server started as a production database would run: fsync, synchronous commit, full pages."""

    def start(self, timeout_s: float = 30.0) -> None:
        self.ensure_initialised()
        user = pg._server_user()
        self.log_file.touch()
        if user is not None:
            pg._grant_to(user, self.log_file)
        options = f"-h {self.host} -p {self.port} -k '' -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
        pg._run(user, "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options, "-w", "start")


def settings(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return ", ".join(
            f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "full_page_writes")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="calls timed per operation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sophia-store-bench-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", port=free_port())
        server.start()
        try:
            walls = {}
            for durable in (False, True):
                if durable:  # the same data directory, restarted with durable commits
                    server.stop()
                    server = DurablePostgres(server.data_dir, port=server.port)
                    server.start()
                database = f"bench_{'durable' if durable else 'local'}"
                with psycopg.connect(server.dsn(), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {database}")
                label = "durable commits" if durable else "as the local platform runs it"
                print(f"\n== {label}: {settings(server.dsn())}")
                walls[durable] = asyncio.run(measure(server.dsn(database), args.n))
            print(
                f"\nSUMMARY store overhead per pipeline (create + {SAVES} saves + {EVENTS} events): "
                f"{walls[False]:.0f} ms with the local platform's settings, {walls[True]:.0f} ms with durable commits"
                f" = {walls[False] / 600:.2f} % / {walls[True] / 600:.2f} % of a 60 s local rehearsal"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
