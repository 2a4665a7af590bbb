"""Benchmark of the local platform's router daemon.

Starts a trivial upstream (uvicorn serving a bare ASGI app) and the real router daemon with the 12 Sophia
services, then measures:

1. proxy throughput — requests/s through one service's router port with N concurrent keep-alive clients for a
   fixed time (and the same load straight at the upstream, for comparison), with client-side latency quantiles
   and the router's own CPU time per request;
2. the rollback path — ``PUT /weights`` setting all 12 canary weights in one call, 200 times: median and p99 of
   the client round trip and of the server-side apply time (the ``Server-Timing`` header).

Client, router and upstream share the machine's cores, so the throughput is a floor for the router, not a ceiling.

    .venv/bin/python benchmarks/router.py [--concurrency 16] [--duration 5] [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from sophia.config import load_config

SERVICES = load_config(Path(__file__).resolve().parent.parent / "sophia.yaml", env={}).service_names

UPSTREAM_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up within {timeout_s} s")


@contextmanager
def process(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(url: str, concurrency: int, duration_s: float) -> tuple[float, list[float], int]:
    """Requests/s, per-request latencies (ms) and non-200 count with ``concurrency`` looping clients."""
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await client.get(url)  # warm the pool
        stop_at = time.perf_counter() + duration_s

        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await client.get(url, headers={"x-sophia-source": "loadgen"})
                latencies.append((time.perf_counter() - started) * 1000.0)
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, failures


def weights_latency(admin_url: str, calls: int) -> tuple[list[float], list[float]]:
    """Client round trip and server-side apply time (ms) of ``calls`` 12-service ``PUT /weights``."""
    round_trips: list[float] = []
    applied: list[float] = []
    with httpx.Client(timeout=5) as client:
        for i in range(calls + 10):
            weights = dict.fromkeys(SERVICES, 0 if i % 2 else 10)
            started = time.perf_counter()
            response = client.put(f"{admin_url}/weights", json=weights)
            elapsed = (time.perf_counter() - started) * 1000.0
            response.raise_for_status()
            if i >= 10:  # the first calls warm the connection
                round_trips.append(elapsed)
                applied.append(float(response.headers["server-timing"].removeprefix("apply;dur=")))
    return round_trips, applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    upstream_port, admin_port = free_port(), free_port()
    ports = {service: free_port() for service in SERVICES}
    router_argv = [sys.executable, "-m", "sophia.platforms.local.router", "--admin-port", str(admin_port)]
    router_argv += ["--log-level", "warning"]
    for service, port in ports.items():
        router_argv += ["--listen", f"{service}={port}"]
    upstream_url, admin_url = f"http://127.0.0.1:{upstream_port}", f"http://127.0.0.1:{admin_port}"

    with process([sys.executable, "-c", UPSTREAM_APP, str(upstream_port)]), process(router_argv) as router:
        wait_until_up(upstream_url)
        wait_until_up(f"{admin_url}/healthz")
        route = {"stable": {"url": upstream_url, "version": "v1.0.0"}, "canary": None, "canary_weight": 0}
        httpx.put(f"{admin_url}/routes/mcp-research", json=route).raise_for_status()

        print(f"proxy throughput, {args.concurrency} concurrent keep-alive clients, {args.duration:g} s each")
        router_url = f"http://127.0.0.1:{ports['mcp-research']}"
        router_process = psutil.Process(router.pid)
        for label, url in (("direct to upstream", upstream_url), ("through the router", router_url)):
            cpu_before = sum(router_process.cpu_times()[:2])
            rps, latencies, failures = asyncio.run(load(url, args.concurrency, args.duration))
            router_cpu_ms = (sum(router_process.cpu_times()[:2]) - cpu_before) * 1000.0 / len(latencies)
            cpu = f"   router CPU {router_cpu_ms:.2f} ms/req" if url == router_url else ""
            print(
                f"  {label:<20} {rps:8.0f} req/s   p50 {quantile(latencies, 0.5):6.2f} ms"
                f"   p99 {quantile(latencies, 0.99):6.2f} ms   non-200: {failures}{cpu}"
            )

        round_trips, applied = weights_latency(admin_url, args.calls)
        print(f"PUT /weights, 12 services, {args.calls} calls")
        for label, values in (("client round trip", round_trips), ("server-side apply", applied)):
            median, p99 = statistics.median(values), quantile(values, 0.99)
            print(f"  {label:<20} median {median:6.3f} ms   p99 {p99:6.3f} ms")


if __name__ == "__main__":
    main()
