"""The local platform's own record of what it started, kept in ``<state_dir>/local/platform.json``.

It is written atomically after every change, so any later ``sophia`` process (status, a resumed run, ``local down``)
knows which processes to inspect or stop. Process identity is (pid, create time), so a recycled pid is never
mistaken for one of ours.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ProcessRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pid: int
    create_time: float


class Instance(ProcessRef):
    """One running version of one service."""

    version: str
    track: str
    port: int
    artifact: str
    log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class ServiceSlot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    router_port: int
    stable: Instance | None = None
    canary: Instance | None = None
    previous: Instance | None = None
    canary_weight: int = 0

    def instances(self) -> list[Instance]:
        return [i for i in (self.stable, self.canary, self.previous) if i is not None]


class PlatformState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    postgres_port: int
    database: str
    router: ProcessRef
    router_admin_port: int
    services: dict[str, ServiceSlot] = Field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> PlatformState | None:
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            return None
