"""The local pipeline's figures: wall time, rollback speed, detection time, resume decision time, peak memory.

Runs a private local platform (free ports, a temporary state folder, the checkout as source) with the local profile
and a warm virtualenv, through the real CLI, and prints:

* `local up` and a full `sophia deploy` (all seven stages, lint-test included) in seconds of wall time;
* for each rehearsal fault, rollback.duration_s (decision to every weight back on stable) and
  rollback.completed_at - canary_traffic_started_at (how long users were exposed);
* how long `sophia resume` takes to decide after a `kill -9` during canary-deploy;
* the peak resident memory of the whole platform (Postgres, router, services, load generator, engine).

Usage: .venv/bin/python benchmarks/pipeline.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
FAULTS = ("comms-mcp:error_rate=1.0", "comms-mcp:crash=1", "crm-mcp:latency_ms=2000")


def free_port(taken: set[int]) -> int:
    for port in range(21000, 32000):
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError("no free port")


def write_config(home: Path) -> Path:
    raw = yaml.safe_load((REPO / "sophia.yaml").read_text())
    taken: set[int] = set()
    raw["source_dir"] = str(REPO)
    raw["state_dir"] = str(home / ".sophia")
    raw["local"].update({"postgres_port": free_port(taken), "router_admin_port": free_port(taken)})
    raw["local"]["router_ports"] = {service["name"]: free_port(taken) for service in raw["services"]}
    path = home / "sophia.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


class MemoryWatch:
    """Samples the summed RSS of every process that belongs to the benchmark's platform or engine."""

    def __init__(self, home: Path) -> None:
        self.home = str(home)
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            total = 0
            for proc in psutil.process_iter(["cmdline"]):
                try:
                    text = " ".join(proc.info["cmdline"] or [])
                    if (
                        self.home in text
                        or self.home in proc.environ().get("SOPHIA_PLATFORM_HOME", "")
                        or ("sophia" in text and self.home in " ".join(proc.environ().values()))
                    ):
                        total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_mib = max(self.peak_mib, total / 2**20)


def sophia(config: Path, *args: str, timeout: float = 600) -> tuple[int, float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "sophia.cli", "--config", str(config), *args],
        capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    return result.returncode, time.perf_counter() - started, result.stdout + result.stderr


def latest(home: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((home / ".sophia" / "runs" / "latest" / "report.json").read_text())
    return report


def exposure(report: dict[str, Any]) -> float:
    started = datetime.fromisoformat(report["stages"][2]["data"]["canary_traffic_started_at"])
    return (datetime.fromisoformat(report["rollback"]["completed_at"]) - started).total_seconds()


def resume_decision(config: Path, home: Path) -> float:
    """kill -9 the engine during canary-deploy, then time `sophia resume` until it has decided (first line)."""
    deploy = subprocess.Popen(
        [sys.executable, "-m", "sophia.cli", "--config", str(config), "deploy", "--version", "v8.8.8", "--skip",
         "lint-test"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert deploy.stdout is not None
    for line in deploy.stdout:
        if "canary weight" in line:
            break
    deploy.send_signal(signal.SIGKILL)
    deploy.wait()
    run_id = json.loads(sophia(config, "runs", "list", "--json")[2])["runs"][0]["run_id"]
    started = time.perf_counter()
    resume = subprocess.Popen(
        [sys.executable, "-m", "sophia.cli", "--config", str(config), "resume", run_id],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert resume.stdout is not None
    decided = None
    for line in resume.stdout:
        if line.startswith("resuming") and decided is None:
            decided = time.perf_counter() - started
    resume.wait()
    return decided if decided is not None else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each fault (default 3)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sophia-bench-"))
    config = write_config(home)
    try:
        with MemoryWatch(home) as memory:
            code, up_s, out = sophia(config, "local", "up")
            assert code == 0, out
            code, deploy_s, out = sophia(config, "deploy", "--version", "v1.1.0")
            assert code == 0, out
            stages = {s["name"]: s["duration_s"] for s in latest(home)["stages"]}
            code, cached_s, out = sophia(config, "deploy", "--version", "v1.2.0")
            assert code == 0, out
            rollbacks: dict[str, list[tuple[float, float]]] = {f: [] for f in FAULTS}
            for _ in range(args.runs):
                for fault in FAULTS:
                    code, _, out = sophia(config, "deploy", "--version", "v9.9.9", "--fault", fault, "--skip",
                                          "lint-test")  # fmt: skip
                    assert code == 1, out
                    report = latest(home)
                    rollbacks[fault].append((report["rollback"]["duration_s"], exposure(report)))
            decision_s = resume_decision(config, home)
        print(f"local up:                         {up_s:6.1f} s")
        print(f"full pipeline, first release:     {deploy_s:6.1f} s  (stages: "
              + ", ".join(f"{k} {v:.1f}" for k, v in stages.items() if v is not None) + ")")  # fmt: skip
        print(f"full pipeline, second release:    {cached_s:6.1f} s  (build cache hit)")
        for fault, rows in rollbacks.items():
            durations = [d for d, _ in rows]
            exposures = [e for _, e in rows]
            print(f"{fault:32s}  rollback median {statistics.median(durations) * 1000:5.1f} ms, max "
                  f"{max(durations) * 1000:5.1f} ms; traffic start -> rollback complete median "
                  f"{statistics.median(exposures):4.2f} s, max {max(exposures):4.2f} s")  # fmt: skip
        print(f"resume after kill -9 decided in:  {decision_s:6.2f} s")
        print(f"peak memory of the whole platform: {memory.peak_mib:6.0f} MiB")
        worst_ms = max(d for rows in rollbacks.values() for d, _ in rows) * 1000
        print(f"pipeline: deploy_s={deploy_s:.1f} rollback_max_ms={worst_ms:.1f} resume_decision_s={decision_s:.2f} "
              f"peak_mib={memory.peak_mib:.0f}")  # fmt: skip
    finally:
        sophia(config, "local", "down")
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
