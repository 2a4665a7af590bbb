"""The rehearsal's image registry: release wheels in a folder, addressed by the SHA-256 of their bytes.

On the Kubernetes rehearsal a pod's container image is a reference of the usual shape,
``REGISTRY/OWNER/sophia-SERVICE@sha256:DIGEST``, whose digest names a wheel published here; the rehearsal kubelet
resolves it and runs the service from that wheel, as the local platform does. ``WheelImages`` is the build-cache
adapter for it: it builds the wheel (cached by content, like ``WheelBuilder``), publishes it, and returns an image
artifact with one reference per service. Production images are built by an OCI builder instead; the Kubernetes
platform cannot tell the two apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
from pathlib import Path

from sophia.config import Settings
from sophia.engine.model import Artifact, ArtifactKind

_DIGEST = re.compile(r"@sha256:([0-9a-f]{64})$")


class UnknownImageError(LookupError):
    """An image reference whose digest the registry does not hold."""


class WheelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def publish(self, wheel: Path) -> str:
        """Store ``wheel`` under its SHA-256 (once); returns the digest."""
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        target = self.root / "sha256" / digest / wheel.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{wheel.name}.{os.getpid()}")
            shutil.copyfile(wheel, partial)
            partial.replace(target)
        return digest

    def resolve(self, image: str) -> Path:
        """The wheel an image reference names."""
        found = _DIGEST.search(image)
        if found is None:
            raise UnknownImageError(f"{image}: the rehearsal registry resolves images by digest only (@sha256:...)")
        folder = self.root / "sha256" / found.group(1)
        wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
        if not wheels:
            raise UnknownImageError(f"{image}: not in the rehearsal registry at {self.root}")
        return wheels[0]


class WheelImages:
    """build-cache for the rehearsal: the wheel, published, as one image reference per service."""

    def __init__(self, settings: Settings, registry: WheelRegistry) -> None:
        from sophia.build.wheel import WheelBuilder

        self._settings = settings
        self._wheels = WheelBuilder(settings.source_dir, settings.state_dir / "artifacts")
        self._registry = registry

    async def build(self, version: str) -> Artifact:
        return await asyncio.to_thread(self.build_sync, version)

    def build_sync(self, version: str) -> Artifact:
        wheel = self._wheels.build_sync(version)
        digest = self._registry.publish(wheel.path)
        release = self._settings.release
        images = {name: f"{release.image_repository(name)}@sha256:{digest}" for name in self._settings.service_names}
        return Artifact(
            ArtifactKind.IMAGE,
            f"{release.registry}/{release.owner}",
            version,
            wheel.git_sha,
            wheel.content_hash,
            wheel.cache_hit,
            wheel.build_seconds,
            images=images,
        )
