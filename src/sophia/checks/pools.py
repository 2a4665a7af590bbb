"""Database pool status from a service's own ``/metrics``: the ``sophia_db_pool_*`` gauges every Sophia service
exports (``sophia.services.metrics``), read through the service's entry endpoint as the readiness probes reach it.

The exposition is small (one service's request metrics), so prometheus_client's text parser reads it whole.
"""

from __future__ import annotations

import math
from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sophia.engine.model import Endpoint, PoolStatus
from sophia.engine.ports import PlatformError

POOL_GAUGES = {"sophia_db_pool_size": "size", "sophia_db_pool_in_use": "in_use", "sophia_db_pool_waiting": "waiting"}


def pool_statuses(exposition: str) -> list[PoolStatus]:
    """Every pool named by a ``pool`` label in the exposition, sorted by name; a gauge a pool lacks (or that is not
    a finite number) reads as 0. Raises ``ValueError`` when the text is not the Prometheus text format."""
    values: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for family in text_string_to_metric_families(exposition):
        field = POOL_GAUGES.get(family.name)
        if field is None:
            continue
        for sample in family.samples:
            pool = sample.labels.get("pool")
            if pool is not None and math.isfinite(sample.value):
                values[pool][field] = round(sample.value)
    return [
        PoolStatus(pool, v.get("size", 0), v.get("in_use", 0), v.get("waiting", 0))
        for pool, v in sorted(values.items())
    ]


class HttpPoolReader:
    """The PoolReader port over HTTP: one GET of ``/metrics`` on the entry, with the entry's headers (a gateway's
    ``Host``). A client per read: readiness reads each service once, and nothing is left open after it."""

    async def pools(self, entry: Endpoint, timeout_s: float) -> list[PoolStatus]:
        url = entry.at("/metrics")
        try:
            async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
                response = await client.get(url, headers=dict(entry.headers))
        except httpx.HTTPError as exc:
            raise PlatformError(f"cannot read {url}: {type(exc).__name__}") from exc
        if response.status_code != httpx.codes.OK:
            raise PlatformError(f"cannot read {url}: HTTP {response.status_code}")
        try:
            return pool_statuses(response.text)
        except ValueError as exc:
            raise PlatformError(f"{url} is not a Prometheus exposition ({exc})") from exc
