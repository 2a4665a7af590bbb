"""build-cache for container images: one image per service from the one Dockerfile, tagged, scanned, recorded.

``ImageBuilder`` is the part both image tools share: what each service's image is called and tagged, which build
arguments it gets, and what goes into the release artifact (each image by digest, its tags, the CycloneDX SBOM and
the scan results). The tool itself is an ``ImageTool``: ``BuildxTool`` (multi-arch, pushed, registry cache) or
``BuildahTool`` (this machine's architecture, local unless asked to push). The artifact is a cache hit when the tool
reused every build step of every image (nothing was rebuilt), as the tool itself reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sophia.build import scan
from sophia.build.tags import image_tags
from sophia.build.wheel import content_hash, git_sha
from sophia.config import Settings
from sophia.engine.model import Artifact, ArtifactKind


@dataclass(frozen=True)
class ImageRequest:
    """One service's image: its repository (``REGISTRY/OWNER/sophia-SERVICE``), tags and build arguments."""

    service: str
    repository: str
    tags: tuple[str, ...]
    build_args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltImage:
    service: str
    digest: str  # sha256:<64 hex> of the image's manifest (list) as the registry or local store holds it
    steps: int  # build steps that make layers or config (FROM excluded)
    cached_steps: int  # of those, how many the tool reused from its cache

    def reference(self, repository: str) -> str:
        return f"{repository}@{self.digest}"


class ImageTool(Protocol):
    name: str

    def prepare(self) -> None:
        """Before the first build: check the tool, log in to the registry when pushing."""
        ...

    def build(self, request: ImageRequest, dockerfile: Path, context: Path) -> BuiltImage: ...

    def filesystem(self, image: BuiltImage, request: ImageRequest) -> contextlib.AbstractContextManager[Path | None]:
        """The image's root filesystem on this machine while the context is open; None when the image only
        exists in a registry (then scanners work from the requirements file)."""
        ...


def build_inputs_hash(source: Path, dockerfile: Path) -> str:
    """The wheel's content hash extended with the Dockerfile and the image requirements."""
    digest = hashlib.sha256(content_hash(source).encode())
    for path in (dockerfile, source / "docker" / "requirements.txt", source / ".dockerignore"):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _commit_time(source: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cI"], cwd=source, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


class ImageBuilder:
    def __init__(self, settings: Settings, tool: ImageTool) -> None:
        self._settings = settings
        self._tool = tool
        self._config = settings.release.images

    async def build(self, version: str) -> Artifact:
        return await asyncio.to_thread(self.build_sync, version)

    def requests(self, version: str, sha: str) -> list[ImageRequest]:
        release, config = self._settings.release, self._config
        args = {"VERSION": version, "REVISION": sha, "SOURCE": config.source_url}
        created = _commit_time(self._settings.source_dir)
        if created:
            args["CREATED"] = created  # the commit's time, not now: the same tree builds the same label
        if config.base:
            args["BASE"] = config.base
        result = []
        for service in config.services or self._settings.service_names:
            repository = release.image_repository(service)
            tags = image_tags(repository, git_sha=sha, branch=config.branch, version=version)
            result.append(ImageRequest(service, repository, tuple(tags), {"SERVICE": service, **args}))
        return result

    def build_sync(self, version: str) -> Artifact:
        started = time.monotonic()
        source = self._settings.source_dir
        dockerfile = source / self._config.dockerfile
        sha = git_sha(source)
        inputs = build_inputs_hash(source, dockerfile)
        self._tool.prepare()
        requests = self.requests(version, sha)
        built = [self._tool.build(request, dockerfile, source) for request in requests]
        record_dir = self._settings.state_dir / "images" / inputs
        record_dir.mkdir(parents=True, exist_ok=True)
        sbom, scans = (None, ()) if not self._config.scan else self._scan(requests[0], built[0], record_dir)
        cache_hit = all(b.steps > 0 and b.cached_steps == b.steps for b in built)
        artifact = Artifact(
            ArtifactKind.IMAGE,
            f"{self._settings.release.registry}/{self._settings.release.owner}",
            version,
            sha,
            inputs,
            cache_hit,
            round(time.monotonic() - started, 3),
            images={r.service: b.reference(r.repository) for r, b in zip(requests, built, strict=True)},
            tags={r.service: r.tags for r in requests},
            sbom=sbom,
            scans=scans,
        )
        steps = {b.service: {"steps": b.steps, "cached": b.cached_steps} for b in built}
        (record_dir / f"{version}.json").write_text(
            json.dumps({"tool": self._tool.name, **artifact.to_dict(), "layers": steps}, indent=2)
        )
        return artifact

    def _scan(
        self, request: ImageRequest, image: BuiltImage, record_dir: Path
    ) -> tuple[str | None, tuple[dict[str, object], ...]]:
        """SBOM and scans of one image: the images differ only in their configuration (service name, labels), not
        in their files, so one image's files stand for all of them."""
        reference = image.reference(request.repository)
        requirements = self._settings.source_dir / "docker" / "requirements.txt"
        with self._tool.filesystem(image, request) as root:
            return scan.scan_image(reference, root, requirements, record_dir)


@contextlib.contextmanager
def no_filesystem() -> Iterator[Path | None]:
    yield None
