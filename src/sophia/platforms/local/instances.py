"""Service instances on the local platform: unpack an artifact, start one version of a service, stop it."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sophia.engine.clock import Clock
from sophia.engine.model import Artifact, faults_text
from sophia.platforms.local import secrets as local_secrets
from sophia.platforms.local import supervisor
from sophia.platforms.local.router_table import Upstream
from sophia.platforms.local.state import Instance, ProcessRef


@dataclass(frozen=True)
class LocalPaths:
    """Where the local platform keeps its files, under the configured state directory."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "local"

    @property
    def state_file(self) -> Path:
        return self.home / "platform.json"

    @property
    def postgres_dir(self) -> Path:
        return self.home / "pg"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def site(self, artifact: Artifact) -> Path:
        return self.home / "sites" / artifact.content_hash[:16]


def unpack(artifact: Artifact, paths: LocalPaths) -> Path:
    """Unpack the wheel once per content hash; services then run the artifact's code, not the working tree."""
    return unpack_wheel(artifact.path, paths.site(artifact))


def unpack_wheel(wheel_path: Path, site: Path) -> Path:
    """Unpack ``wheel_path`` into ``site`` unless a complete copy is there already."""
    if (site / ".complete").exists():
        return site
    staging = site.with_name(f"{site.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")  # one per unpacker
    staging.mkdir(parents=True)
    with zipfile.ZipFile(wheel_path) as wheel:
        wheel.extractall(staging)
    (staging / ".complete").touch()
    try:
        staging.rename(site)
    except OSError:  # another unpacker won the race: use its copy
        shutil.rmtree(staging, ignore_errors=True)
    return site


def start(
    paths: LocalPaths,
    *,
    service: str,
    kind: str,
    track: str,
    artifact: Artifact,
    version: str,
    database_url: str,
    faults: Mapping[str, float] | None = None,
) -> Instance:
    site = unpack(artifact, paths)
    log = paths.logs / f"{service}.{track}.{version}.log"
    env = {
        "SOPHIA_SERVICE": service,
        "SOPHIA_VERSION": version,
        "SOPHIA_TRACK": track,
        "SOPHIA_GIT_SHA": artifact.git_sha,
        "SOPHIA_ARTIFACT": artifact.content_hash,
        "SOPHIA_BACKEND": "sandbox",
        "SOPHIA_FAULTS": faults_text(faults or {}),
        **local_secrets.service_env(paths.home, kind, database_url),
    }
    ref, port = supervisor.spawn_service(service=service, kind=kind, site=site, home=paths.home, env=env, log=log)
    return Instance(
        pid=ref.pid, create_time=ref.create_time, version=version, track=track, port=port,
        artifact=artifact.content_hash, log=str(log),
    )  # fmt: skip


def strays(paths: LocalPaths, keep: set[int]) -> list[ProcessRef]:
    """Canary processes of this platform that its record does not know (their starter died before recording them)."""
    return [
        ref for ref, env in supervisor.owned(paths.home) if env.get("SOPHIA_TRACK") == "canary" and ref.pid not in keep
    ]


async def wait_ready(instance: Instance, clock: Clock, timeout_s: float) -> None:
    await supervisor.wait_ready(instance, f"{instance.url}/ready", timeout_s, Path(instance.log), clock)


async def stop(*instances: ProcessRef | None) -> None:
    refs = [i for i in instances if i is not None]
    if refs:
        await asyncio.to_thread(supervisor.stop, refs)


def upstream(instance: Instance | None) -> Upstream | None:
    return None if instance is None else Upstream(url=instance.url, version=instance.version)
