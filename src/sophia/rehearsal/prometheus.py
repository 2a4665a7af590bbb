"""The rehearsal's Prometheus: the real server (Debian's ``prometheus`` package), scraping the mesh's metrics.

It scrapes the router daemon's Istio metrics every second into a TSDB of its own, so the engine's Prometheus
metrics source judges canaries from the same PromQL it runs against a cluster's Prometheus.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from sophia.engine.ports import PreflightError
from sophia.platforms.local import supervisor
from sophia.platforms.local.state import ProcessRef

SCRAPE_INTERVAL = "1s"
FALLBACK = Path("/usr/bin/prometheus")


def binary() -> str:
    found = shutil.which("prometheus") or (str(FALLBACK) if os.access(FALLBACK, os.X_OK) else None)
    if found is None:
        raise PreflightError("Prometheus is not installed (Debian: apt-get install prometheus; see ci/)")
    return found


def start(home: Path, port: int, target: str) -> ProcessRef:
    """Start Prometheus on 127.0.0.1:``port`` scraping ``target`` (host:port, path /metrics)."""
    folder = home / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
        "scrape_configs": [{"job_name": "mesh", "static_configs": [{"targets": [target]}]}],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config, indent=2))
    argv = [binary(), f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    return supervisor.spawn(argv, home=home, env={}, log=home / "logs" / "prometheus.log")
