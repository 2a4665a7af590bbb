"""Benchmark of one Sophia service process: start time, memory, /health and /query/neon latency, MCP's cost.

Starts an embedded Postgres with the migrations applied and analytics-mcp's role provisioned, then measures:

1. start time (spawn to the first answered ``/health``) and resident memory of a generic service (median of 3);
   with ``--before REV`` also the same for the code at git revision REV, for a before/after comparison;
2. ``GET /health`` latency: sequential keep-alive requests, client side (p50 / p99);
3. ``POST /query/neon`` ``SELECT 1`` latency at a steady open-loop rate (default 100 req/s for 10 s) as the
   analytics role, through the whole path (token, screening, read-only transaction, wrapped cursor);
4. what the MCP endpoint costs when it is first used: the process's CPU time and memory before and after the
   first ``tools/list`` (the SDK is imported then, not at start-up).

Client, service and Postgres share the machine's cores. The last line is the summary:
``services: health_p99_ms=N query_p99_ms=N rss_mib=N start_s=N``.

    .venv/bin/python benchmarks/services.py [--rate 100] [--duration 10] [--before REV]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.fakes.service_app import AUTH, TOKEN, analytics_url  # noqa: E402

from sophia.platforms.local.postgres import EmbeddedPostgres  # noqa: E402

MCP_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MCP_HEADERS = {**AUTH, "accept": "application/json, text/event-stream"}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def service(
    name: str, kind: str, env: Mapping[str, str], pythonpath: str | None = None
) -> Iterator[tuple[str, psutil.Process, float]]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SOPHIA_", "DATABASE_URL", "ANALYTICS_"))}
    environ |= {"SOPHIA_API_TOKEN": TOKEN, **env}
    if pythonpath:
        environ["PYTHONPATH"] = pythonpath
    argv = [sys.executable, "-m", "sophia.services", "--service", name, "--kind", kind, "--port", str(port)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=environ, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                httpx.get(url + "/health", timeout=1.0)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}") from None
                time.sleep(0.005)
        yield url, psutil.Process(proc.pid), time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(10)


def start_and_memory(pythonpath: str | None = None) -> tuple[float, float]:
    starts, rss = [], []
    for _ in range(3):
        with service("mcp-research", "generic", {}, pythonpath) as (_, proc, took):
            time.sleep(0.2)
            starts.append(took)
            rss.append(proc.memory_info().rss / 2**20)
    return statistics.median(starts), statistics.median(rss)


def health_latency(url: str, count: int = 2000) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url) as client:
        for _ in range(100):
            client.get("/health")
        for _ in range(count):
            began = time.perf_counter()
            client.get("/health").raise_for_status()
            latencies.append((time.perf_counter() - began) * 1000)
    return latencies


async def query_latency(url: str, rate: float, duration: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    body = {"query": "SELECT 1"}
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30, limits=limits) as client:
        for _ in range(50):
            (await client.post("/query/neon", json=body)).raise_for_status()

        async def one() -> None:
            nonlocal errors
            began = time.perf_counter()
            try:
                ok = (await client.post("/query/neon", json=body)).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - began) * 1000)
            errors += not ok

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * duration)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies, errors


def mcp_cost(url: str, proc: psutil.Process) -> tuple[float, float]:
    time.sleep(0.2)
    cpu, rss = sum(proc.cpu_times()[:2]), proc.memory_info().rss
    httpx.post(url + "/mcp", json=MCP_LIST, headers=MCP_HEADERS, timeout=30).raise_for_status()
    time.sleep(0.2)
    return sum(proc.cpu_times()[:2]) - cpu, (proc.memory_info().rss - rss) / 2**20


def unpack_revision(rev: str, into: Path) -> str:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return str(into / "src")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--before", help="git revision to compare start time and memory with")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="sophia-bench-services-"))
    pg = EmbeddedPostgres(base / "data", port=free_port())
    pg.start()
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        role_url = analytics_url(pg.dsn("bench"))

        start_s, rss_mib = start_and_memory()
        print(f"generic service: start {start_s:.2f} s, rss {rss_mib:.1f} MiB (median of 3)")
        if args.before:
            before_start, before_rss = start_and_memory(unpack_revision(args.before, base / "before"))
            print(f"  at {args.before}: start {before_start:.2f} s, rss {before_rss:.1f} MiB")

        with service("mcp-agents", "generic", {}) as (url, proc, _):
            health = health_latency(url)
            cpu_s, mcp_mib = mcp_cost(url, proc)
        print(f"GET /health: p50 {quantile(health, 0.5):.2f} ms, p99 {quantile(health, 0.99):.2f} ms ({len(health)})")
        print(f"MCP on first use: +{cpu_s:.2f} s CPU, +{mcp_mib:.1f} MiB (none of it at start-up)")

        with service("analytics-mcp", "analytics", {"ANALYTICS_DATABASE_URL": role_url}) as (url, _, _):
            query, errors = asyncio.run(query_latency(url, args.rate, args.duration))
        print(f"POST /query/neon SELECT 1 at {args.rate:g} req/s for {args.duration:g} s: "
              f"p50 {quantile(query, 0.5):.2f} ms, p99 {quantile(query, 0.99):.2f} ms, {errors} errors")  # fmt: skip
        print(f"services: health_p99_ms={quantile(health, 0.99):.2f} query_p99_ms={quantile(query, 0.99):.2f} "
              f"rss_mib={rss_mib:.1f} start_s={start_s:.2f}")  # fmt: skip
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
