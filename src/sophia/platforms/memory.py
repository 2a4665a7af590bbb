"""An in-process platform: the Platform protocol over plain dictionaries.

It runs nothing; it keeps the same books as a real platform (stable, canary, the warm previous stable, canary
weights) with the same rules, so the engine's run loop can be exercised in milliseconds and the platform
contract suite has a reference implementation to agree with. Its URLs use the ``memory://`` scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sophia.engine.model import CanarySpec, Endpoint, ResourceReport, ResourceUsage, ServiceStatus, Track, Workload
from sophia.engine.ports import FencedError, PlatformError, PreflightError


@dataclass
class MemorySlot:
    stable: str
    canary: str | None = None
    previous: str | None = None
    canary_weight: int = 0
    faults: dict[str, float] = field(default_factory=dict)


class MemoryPlatform:
    name = "memory"

    def __init__(self, services: Mapping[str, str], *, fail_on: set[str] | None = None) -> None:
        """``services`` maps each name to its stable version; ``fail_on`` names operations that should fail."""
        self.slots = {name: MemorySlot(stable=version) for name, version in services.items()}
        self.fail_on = set(fail_on or ())
        self.crashed: set[tuple[str, str]] = set()  # (service, "stable"|"canary") whose workload has exited
        # Resident memory in MiB per (service, track), as a test sets it; unset workloads are not measured.
        self.memory_mib: dict[tuple[str, Track], float] = {}
        self.calls: list[str] = []
        self.highest_fence = 0
        self._token: int | None = None

    def fence(self, token: int) -> None:
        self._token = token

    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        if operation in self.fail_on:
            raise PlatformError(f"{operation} failed (simulated)")
        if operation not in {"inspect", "preflight", "validate", "resources"} and self._token is not None:
            if self._token < self.highest_fence:
                raise FencedError(f"stale fence {self._token} < {self.highest_fence}: another process has the run")
            self.highest_fence = self._token

    async def preflight(self) -> None:
        self._enter("preflight")
        if not self.slots:
            raise PreflightError("no services are deployed")

    async def validate(self) -> list[str]:
        self._enter("validate")
        return [f"{name} {track}: workload exited" for name, track in sorted(self.crashed)]

    async def aclose(self) -> None:
        self.calls.append("aclose")

    def _workload(self, name: str, track: Track, version: str | None) -> Workload | None:
        if version is None:
            return None
        alive = (name, track.value) not in self.crashed
        probe = Endpoint(f"memory://{name}/{track.value}")
        return Workload(version, alive, {"destination_workload": f"{name}-{track.value}"}, probe)

    async def inspect(self) -> list[ServiceStatus]:
        self._enter("inspect")
        return [
            ServiceStatus(
                name=name,
                stable=self._workload(name, Track.STABLE, slot.stable),
                canary=self._workload(name, Track.CANARY, slot.canary),
                canary_weight=slot.canary_weight,
                entry=Endpoint(f"memory://{name}"),
                pins={track: {"x-memory-track": track.value} for track in Track},
            )
            for name, slot in self.slots.items()
        ]

    async def resources(self) -> ResourceReport:
        self._enter("resources")
        return ResourceReport(
            tuple(
                ResourceUsage(name, track, mib)
                for (name, track), mib in self.memory_mib.items()
                if self._workload(
                    name, track, self.slots[name].stable if track is Track.STABLE else self.slots[name].canary
                )
            )
        )

    async def deploy_canary(self, spec: CanarySpec) -> None:
        self._enter("deploy_canary")
        for name, slot in self.slots.items():
            slot.canary, slot.canary_weight = spec.version, 0
            slot.faults = dict(spec.faults.get(name, {}))
            self.crashed.discard((name, "canary"))
            if slot.faults.get("crash"):
                self.crashed.add((name, "canary"))  # crashes under its first real work

    async def set_weights(self, weights: Mapping[str, int]) -> None:
        self._enter("set_weights")
        unknown = sorted(set(weights) - set(self.slots))
        if unknown:
            raise PlatformError(f"unknown services: {', '.join(unknown)}")
        for name, weight in weights.items():
            if not 0 <= weight <= 100:
                raise PlatformError(f"weight {weight} for {name} is outside 0..100")
        for name, weight in weights.items():
            self.slots[name].canary_weight = weight

    async def promote(self) -> None:
        self._enter("promote")
        for slot in self.slots.values():
            if slot.canary is not None:
                slot.previous, slot.stable, slot.canary, slot.canary_weight = slot.stable, slot.canary, None, 0
                slot.faults = {}

    async def retire_previous(self) -> None:
        self._enter("retire_previous")
        for slot in self.slots.values():
            slot.previous = None

    async def rollback(self) -> None:
        self._enter("rollback")
        for slot in self.slots.values():
            if slot.previous is not None:
                slot.stable, slot.canary, slot.previous = slot.previous, slot.stable, None
            slot.canary_weight = 0

    async def retire_canary(self) -> None:
        self._enter("retire_canary")
        for name, slot in self.slots.items():
            slot.canary, slot.canary_weight, slot.faults = None, 0, {}
            self.crashed.discard((name, "canary"))
