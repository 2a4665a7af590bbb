"""What each service's pods use, from the cluster's metrics API (``metrics.k8s.io/v1beta1`` PodMetrics, served by
metrics-server): pure functions of listed objects.

A PodMetrics object is matched to one of our Pods by name in the same namespace, and the Pod's ``app`` label names
the service; the namespace is the track (a promoted canary's template runs in the stable namespace). Only the
service's own container counts (the mesh's sidecar is not the service). With several replicas, the workload's
figures are the highest memory and the highest CPU among its pods: a limit is per pod, and an average would hide
the one that leaks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sophia.engine.model import ResourceUsage, Track

Object = dict[str, Any]
MIB = 2**20

_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:[eE]([+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)
_SUFFIX = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip


def quantity(text: str) -> float:
    """A Kubernetes resource quantity (``250m``, ``12345n``, ``64Mi``, ``1.5``, ``1e3``) as a plain number."""
    found = _QUANTITY.match(text.strip())
    if found is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, exponent, suffix = found.groups()
    return float(number) * (10.0 ** int(exponent) if exponent else _SUFFIX[suffix or ""])


def cpu_percent(text: str) -> float:
    """CPU in percent of one core (``250m`` is 25 %)."""
    return quantity(text) * 100


def mebibytes(text: str) -> float:
    return quantity(text) / MIB


def pod_usage(pods: Mapping[Track, Sequence[Object]], metrics: Mapping[Track, Sequence[Object]]) -> list[ResourceUsage]:
    """Per (service, track), the highest memory and CPU of the service's container among its pods, as
    metrics.k8s.io saw them (CPU over the metrics API's window, in percent of one core).

    A PodMetrics without a matching Pod of ours, without the service's container, or with a quantity that does not
    parse is skipped."""
    busiest: dict[tuple[str, Track], ResourceUsage] = {}
    for track, found in metrics.items():
        services = {p["metadata"]["name"]: app for p in pods.get(track, ()) if (app := _labels(p).get("app"))}
        for item in found:
            service = services.get(item.get("metadata", {}).get("name", ""))
            container = next((c for c in item.get("containers") or () if c.get("name") == service), None)
            if service is None or container is None:
                continue
            try:
                usage = ResourceUsage(service, track, mebibytes(container["usage"]["memory"]),
                                      cpu_percent(container["usage"]["cpu"]))  # fmt: skip
            except (KeyError, TypeError, ValueError):
                continue
            known = busiest.get((service, track), usage)
            memory, cpu = max(known.memory_mib, usage.memory_mib), max(known.cpu_percent or 0, usage.cpu_percent or 0)
            busiest[(service, track)] = ResourceUsage(service, track, memory, cpu)
    return [busiest[key] for key in sorted(busiest)]


def _labels(obj: Object) -> Mapping[str, str]:
    labels: Mapping[str, str] = obj.get("metadata", {}).get("labels") or {}
    return labels
