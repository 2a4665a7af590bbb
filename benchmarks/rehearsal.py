"""The Kubernetes rehearsal against the local platform, same machine, same run, through the real CLI.

* k8s_deploy_s / local_deploy_s: wall time of a full `sophia deploy` (lint-test skipped on both) on each;
* tts_error_s / tts_crash_s: on the rehearsal, time from canary traffic start to rollback complete with
  `comms-mcp:error_rate=1.0` and `comms-mcp:crash=1`;
* peak_mib: peak resident memory of the whole rehearsal (control plane, router, Prometheus, Postgres, agent, pods,
  engine, load generator).

Last line: ``rehearsal: k8s_deploy_s=N local_deploy_s=N tts_error_s=N tts_crash_s=N peak_mib=N``.

Usage: .venv/bin/python benchmarks/rehearsal.py
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import REPO, MemoryWatch, exposure, free_port, latest, sophia


def write_config(home: Path, platform: str) -> Path:
    raw = yaml.safe_load((REPO / "sophia.yaml").read_text())
    taken: set[int] = set()
    raw.update({"platform": platform, "source_dir": str(REPO), "state_dir": str(home / ".sophia")})
    raw["local"].update({"postgres_port": free_port(taken), "router_admin_port": free_port(taken)})
    raw["local"]["router_ports"] = {s["name"]: free_port(taken) for s in raw["services"]}
    ports = ("apiserver_port", "etcd_port", "etcd_peer_port", "router_admin_port", "gateway_port", "prometheus_port",
             "postgres_port", "metrics_api_port")  # fmt: skip
    raw["rehearsal"] = {name: free_port(taken) for name in ports}
    raw["rehearsal"]["router_port_base"] = _run_of_ports(len(raw["services"]), taken)
    path = home / "sophia.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run_of_ports(count: int, taken: set[int]) -> int:
    for first in range(26000, 31000, count):
        span = set(range(first, first + count))
        if span & taken:
            continue
        try:
            for port in span:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        taken |= span
        return first
    raise RuntimeError("no run of free ports")


def deploy_time(config: Path) -> float:
    code, seconds, out = sophia(config, "deploy", "--version", "v1.1.0", "--skip", "lint-test")
    assert code == 0, out
    return seconds


def main() -> None:
    local_home = Path(tempfile.mkdtemp(prefix="sophia-bench-local-"))
    k8s_home = Path(tempfile.mkdtemp(prefix="sophia-bench-k8s-"))
    local, k8s = write_config(local_home, "local"), write_config(k8s_home, "kubernetes")
    try:
        code, _, out = sophia(local, "local", "up")
        assert code == 0, out
        local_s = deploy_time(local)
        sophia(local, "local", "down")
        with MemoryWatch(k8s_home) as memory:
            code, up_s, out = sophia(k8s, "rehearse", "up")
            assert code == 0, out
            k8s_s = deploy_time(k8s)
            exposed = {}
            for fault in ("comms-mcp:error_rate=1.0", "comms-mcp:crash=1"):
                code, _, out = sophia(k8s, "deploy", "--version", "v9.9.9", "--fault", fault, "--skip", "lint-test")
                assert code == 1, out
                exposed[fault] = exposure(latest(k8s_home))
        print(f"rehearse up:                      {up_s:6.1f} s")
        print(f"full pipeline on the rehearsal:   {k8s_s:6.1f} s")
        print(f"full pipeline on the local platform: {local_s:6.1f} s")
        for fault, seconds in exposed.items():
            print(f"{fault:32s}  traffic start -> rollback complete {seconds:5.2f} s")
        print(f"peak memory of the whole rehearsal: {memory.peak_mib:6.0f} MiB")
        print(f"rehearsal: k8s_deploy_s={k8s_s:.1f} local_deploy_s={local_s:.1f} "
              f"tts_error_s={exposed['comms-mcp:error_rate=1.0']:.2f} tts_crash_s={exposed['comms-mcp:crash=1']:.2f} "
              f"peak_mib={memory.peak_mib:.0f}")  # fmt: skip
    finally:
        sophia(local, "local", "down")
        sophia(k8s, "rehearse", "down")
        shutil.rmtree(local_home, ignore_errors=True)
        shutil.rmtree(k8s_home, ignore_errors=True)


if __name__ == "__main__":
    main()
