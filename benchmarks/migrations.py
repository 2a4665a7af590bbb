"""Migration benchmarks on the embedded Postgres.

1. How long ``ops/sql/001_audit.sql`` takes to apply (and verify) on a fresh database — target < 1 s.
2. Live traffic while a migration waits for a lock that live traffic holds. An ``ALTER TABLE`` needs an ACCESS
   EXCLUSIVE lock; while it queues behind a long-running reader, every new query on the table queues behind *it*.
   ``lock_timeout`` bounds that queueing: the migration gives up, traffic flows, and the runner retries after a
   backoff. We measure the longest time any traffic query was blocked, with the runner's lock_timeout and without
   one (the naive ``psql -f`` of the deployment guide).

Run: ``.venv/bin/python benchmarks/migrations.py [--runs 5] [--lock-timeout 0.5] [--hold 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from sophia.db.files import load_migrations
from sophia.db.runner import Runner, RunnerOptions
from sophia.engine.clock import SystemClock
from sophia.platforms.local.postgres import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[1]


def fresh_database(server: EmbeddedPostgres) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.dsn(name)


def runner_for(url: str, folder: Path, options: RunnerOptions) -> Runner:
    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)

    return Runner(connect, load_migrations(folder), SystemClock(), options)


async def time_audit_schema(server: EmbeddedPostgres, runs: int) -> list[float]:
    timings = []
    for _ in range(runs):
        url = fresh_database(server)
        started = time.perf_counter()
        result = await runner_for(url, REPO / "ops" / "sql", RunnerOptions()).migrate()
        timings.append(time.perf_counter() - started)
        assert result.applied == ("001_audit",)
    return timings


async def traffic(url: str, stop: asyncio.Event, latencies: list[tuple[float, float]]) -> None:
    """One client doing short statements on the table, recording (start, duration) of each."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            started = time.perf_counter()
            await conn.execute("INSERT INTO orders (amount) VALUES (1)")
            await conn.execute("SELECT count(*) FROM orders WHERE id > (SELECT max(id) - 10 FROM orders)")
            latencies.append((started, time.perf_counter() - started))
            await asyncio.sleep(0.005)


async def blocked_traffic(
    server: EmbeddedPostgres, *, lock_timeout_s: float | None, hold_s: float, workers: int
) -> dict[str, Any]:
    url = fresh_database(server)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, amount int)")
        conn.execute("INSERT INTO orders (amount) SELECT 1 FROM generate_series(1, 1000)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "001_note.sql").write_text("ALTER TABLE orders ADD COLUMN note text;\n")
        options = RunnerOptions(
            lock_timeout_s=lock_timeout_s or 3600.0, lock_attempts=50, retry_backoff_s=0.25, statement_timeout_s=3600.0
        )
        stop = asyncio.Event()
        latencies: list[tuple[float, float]] = []
        clients = [asyncio.create_task(traffic(url, stop, latencies)) for _ in range(workers)]
        await asyncio.sleep(0.3)
        reader = await psycopg.AsyncConnection.connect(url)  # a long report: an open transaction on the table
        await reader.execute("SELECT sum(amount) FROM orders")
        release_at = time.perf_counter() + hold_s

        async def finish_report() -> None:
            await asyncio.sleep(hold_s)
            await reader.rollback()

        report = asyncio.create_task(finish_report())
        migration_started = time.perf_counter()
        await runner_for(url, folder, options).migrate()
        migration_done = time.perf_counter()
        await report
        await reader.close()
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*clients)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT attempts FROM sophia_meta.schema_migrations").fetchone()
    during = [d for s, d in latencies if s >= migration_started - 0.05]
    return {
        "longest_block_s": max(during, default=0.0),
        "attempts": row[0] if row else 0,
        "migration_s": migration_done - migration_started,
        "reader_released_after_s": release_at - migration_started,
        "queries": len(latencies),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lock-timeout", type=float, default=0.5, help="runner lock_timeout in seconds")
    parser.add_argument("--hold", type=float, default=3.0, help="how long live traffic holds its lock")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sophia-bench-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", port=_free_port())
        server.start()
        try:
            timings = await time_audit_schema(server, args.runs)
            print(
                f"001_audit.sql apply+verify on embedded Postgres: median {statistics.median(timings) * 1000:.0f} ms, "
                f"max {max(timings) * 1000:.0f} ms over {args.runs} runs (target < 1000 ms)"
            )
            bounded = await blocked_traffic(
                server, lock_timeout_s=args.lock_timeout, hold_s=args.hold, workers=args.workers
            )
            print(
                f"with lock_timeout={args.lock_timeout:g}s: longest block of live traffic "
                f"{bounded['longest_block_s'] * 1000:.0f} ms while a reader held its lock "
                f"{bounded['reader_released_after_s']:.1f}s; migration needed {bounded['attempts']} attempts, "
                f"{bounded['migration_s']:.1f}s; {bounded['queries']} traffic queries"
            )
            naive = await blocked_traffic(server, lock_timeout_s=None, hold_s=args.hold, workers=args.workers)
            print(
                f"without lock_timeout (a plain psql -f): longest block of live traffic "
                f"{naive['longest_block_s'] * 1000:.0f} ms (the whole time the reader held its lock)"
            )
            verdict = "yes" if bounded["longest_block_s"] <= args.lock_timeout + 0.1 else "NO"
            print(f"traffic never blocked longer than lock_timeout (+100 ms scheduling slack): {verdict}")
        finally:
            server.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


if __name__ == "__main__":
    asyncio.run(main())
