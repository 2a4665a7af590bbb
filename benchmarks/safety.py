"""What every failure costs to end safe, on a private local platform through the real CLI (local profile):

* traffic: rollback.duration_s of a run failing in synthetics (``--fault stage:synthetics=fail``) — from the decision
  to roll back to every weight back on stable — while the run has a migration applied;
* database: how long that rollback then took to undo the migration with its down file (``rollback.database``),
  and, in a second failing run whose migration has no down file, to restore the pg_dump backup;
* undo: the wall time of ``sophia undo`` for the 12 services (canary of the previous release, 100 %, readiness).

Measures and prints; asserts only that each command ended as intended. Its last line:
``safety: traffic_ms=N db_undo_s=N undo_s=N``.

Usage: .venv/bin/python benchmarks/safety.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import REPO, latest, sophia, write_config

DOWN = ("003_bench_widgets", "CREATE TABLE bench_widgets (id bigint PRIMARY KEY, name text);\n",
        "DROP TABLE bench_widgets;\n")  # fmt: skip
NO_DOWN = ("004_bench_gadgets", "CREATE TABLE bench_gadgets (id bigint PRIMARY KEY);\n", None)


def private_migrations(home: Path, config: Path) -> Path:
    """A copy of ops/sql the benchmark can add files to, named in its config; and a local profile that tolerates a
    machine busy with other work (8 req/s per service, health probes of 3 × 5 s, a canary judged from 5 requests and
    by its errors only, a 60 s lease): what is measured here is how long ending safe takes, not how sensitive the
    analysis is."""
    folder = home / "sql"
    shutil.copytree(REPO / "ops" / "sql", folder)
    raw = yaml.safe_load(config.read_text())
    raw["migrations_dir"] = str(folder)
    raw["profiles"]["local"]["health"] = {"interval_s": 2, "timeout_s": 5, "failure_threshold": 3}
    raw["profiles"]["local"]["analysis"].update(
        {"min_requests": 5, "max_p95_latency_ms": 60000, "max_p99_latency_ms": 60000}
    )
    raw["profiles"]["local"]["traffic"]["rps_per_service"] = 8  # our own load must not starve the router here
    raw["profiles"]["local"]["session"] = {"lease_ttl_s": 60, "heartbeat_s": 5, "request_poll_s": 0.25}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def add(folder: Path, migration: tuple[str, str, str | None]) -> None:
    name, up, down = migration
    (folder / f"{name}.sql").write_text(up)
    if down is not None:
        (folder / f"{name}.down.sql").write_text(down)


def failing_run(config: Path, home: Path, version: str) -> dict[str, Any]:
    code, _, out = sophia(config, "deploy", "--version", version, "--skip", "lint-test", "--fault",
                          "stage:synthetics=fail")  # fmt: skip
    assert code == 1, out
    report = latest(home)
    assert report["outcome"] == "rolled_back", json.dumps(report["rollback"])
    return report


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="sophia-bench-safety-"))
    config = write_config(home)
    folder = private_migrations(home, config)
    try:
        code, _, out = sophia(config, "local", "up")
        assert code == 0, out
        for version in ("v1.1.0", "v1.2.0"):  # two releases in the history; their synthetics are not measured here
            code, _, out = sophia(config, "deploy", "--version", version, "--skip", "lint-test", "--skip", "synthetics")
            assert code == 0, out
        add(folder, DOWN)
        by_down = failing_run(config, home, "v1.3.0")
        traffic_ms = by_down["rollback"]["duration_s"] * 1000
        database = by_down["rollback"]["database"]
        assert database["method"] == "down_files", database
        db_undo_s = database["duration_s"]
        add(folder, NO_DOWN)
        by_restore = failing_run(config, home, "v1.3.1")
        restore = by_restore["rollback"]["database"]
        assert restore["method"] == "restore_backup", restore
        code, undo_s, out = sophia(config, "undo")
        assert code == 0, out
        undone = latest(home)
        assert (undone["version"], undone["undo_of"]) == ("v1.1.0", "v1.2.0"), undone["version"]
        print(f"traffic back on stable (synthetics failed, migration applied): {traffic_ms:7.1f} ms")
        print(f"database undone with the down file ({', '.join(database['migrations'])}): {db_undo_s:6.3f} s")
        print(f"database restored from the pg_dump backup (no down file):      {restore['duration_s']:6.3f} s")
        print(f"rollback of the restore run, traffic:                          "
              f"{by_restore['rollback']['duration_s'] * 1000:7.1f} ms")  # fmt: skip
        print(f"sophia undo, 12 services (canary, 100 %, readiness):            {undo_s:6.1f} s")
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"load average while measuring: {load} on {os.cpu_count()} cores")
        print(f"safety: traffic_ms={traffic_ms:.0f} db_undo_s={db_undo_s:.2f} undo_s={undo_s:.1f}")
    finally:
        sophia(config, "local", "down")
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
