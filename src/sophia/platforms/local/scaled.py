"""A configuration at scale: ``sophia.yaml`` plus synthetic generic services, for rehearsals with 200 services.

The engine's verdicts must not change with the number of services, and the only way to know is to run the same
code with many. ``scaled`` takes a parsed ``sophia.yaml`` and appends ``synthetic-013``, ``synthetic-014``, ... (all
``kind: generic``, which every Sophia service can play) until there are ``services`` in all, each listening on the
next router port (``local.router_port_base`` + its position); ``ports`` re-ports everything (services, Postgres,
router admin) for a private copy, and
``total_rps`` spreads one total load over all services instead of keeping the rate per service, since one machine's
router and load generator serve a total, not a rate per service.

``scripts/scaled_config.py`` writes one to a file; the benchmark ``benchmarks/scale.py`` and the tests build one in
memory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

SYNTHETIC_PREFIX = "synthetic-"
MIN_RPS_PER_SERVICE = 0.1


def synthetic_name(index: int) -> str:
    """The name of the ``index``-th service (1-based), for the ones added."""
    return f"{SYNTHETIC_PREFIX}{index:03d}"


def scaled(
    raw: Mapping[str, Any],
    services: int,
    *,
    ports: Callable[[], int] | None = None,
    total_rps: float | None = None,
) -> dict[str, Any]:
    """``raw`` (a parsed ``sophia.yaml``) with synthetic services up to ``services`` in all; ``raw`` is not changed.

    Without ``ports`` the new services take the router ports after the listed ones; with it, every port is taken
    from ``ports()`` instead. With ``total_rps`` every profile's load generator sends
    that many requests a second in all, spread evenly (at least ``MIN_RPS_PER_SERVICE`` per service).
    """
    out = copy.deepcopy(dict(raw))
    listed: list[dict[str, Any]] = out.setdefault("services", [])
    if services < len(listed):
        raise ValueError(f"the configuration already has {len(listed)} services, more than {services}")
    local: dict[str, Any] = out.setdefault("local", {})
    for index in range(len(listed) + 1, services + 1):
        listed.append({"name": synthetic_name(index), "kind": "generic"})
    if ports is not None:
        local["router_ports"] = {service["name"]: ports() for service in listed}
        local["postgres_port"], local["router_admin_port"] = ports(), ports()
    if total_rps is not None:
        rate = max(MIN_RPS_PER_SERVICE, round(total_rps / services, 2))
        for profile in out.get("profiles", {}).values():
            profile.setdefault("traffic", {})["rps_per_service"] = rate
    return out


def write_scaled(base: Path, target: Path, services: int, *, total_rps: float | None = None) -> Path:
    """Write ``base`` scaled to ``services`` into ``target``.

    The checkout and migrations are still ``base``'s; the platform's state goes to ``.sophia-scaled`` beside
    ``target``, so a rehearsal at scale never touches the 12-service platform's record.
    """
    raw = yaml.safe_load(base.read_text()) or {}
    out = scaled(raw, services, total_rps=total_rps)
    folder = base.resolve().parent
    source = (folder / out.get("source_dir", ".")).resolve()
    out["source_dir"] = str(source)
    out["state_dir"] = str(target.resolve().parent / ".sophia-scaled")
    out["migrations_dir"] = str((source / out.get("migrations_dir", "ops/sql")).resolve())
    target.write_text(f"# {base.name} scaled to {services} services (scripts/scaled_config.py)\n"
                      + yaml.safe_dump(out, sort_keys=False))  # fmt: skip
    return target
