"""The release artifact: a wheel of the checkout, tagged with the release version and git SHA, cached by content.

The cache key is a SHA-256 over the paths and bytes of every file that goes into the wheel, so building the same
tree twice is a cache hit whatever the release version, and any edit is a miss. Artifacts live in
``<state_dir>/artifacts/<content-hash>/`` next to an ``artifact.json`` manifest; ``tags/<version>.json`` records
which content each release version was built from.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sophia.engine.model import Artifact, ArtifactKind

# What the wheel is made of (hatchling includes src/sophia; metadata comes from pyproject.toml and README.md).
_INPUTS = ("pyproject.toml", "README.md", "src")
_SKIP_PARTS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


class BuildError(RuntimeError):
    pass


def content_hash(source: Path) -> str:
    digest = hashlib.sha256()
    for path in _input_files(source):
        digest.update(path.relative_to(source).as_posix().encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _input_files(source: Path) -> list[Path]:
    files: list[Path] = []
    for name in _INPUTS:
        root = source / name
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files.extend(
                p
                for p in root.rglob("*")
                if p.is_file() and not _SKIP_PARTS.intersection(p.parts) and p.suffix not in {".pyc", ".pyo"}
            )
    return sorted(files)


def git_sha(source: Path) -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *_INPUTS],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


class WheelBuilder:
    def __init__(self, source: Path, artifacts_dir: Path) -> None:
        self._source = source
        self._dir = artifacts_dir

    async def build(self, version: str) -> Artifact:
        return await asyncio.to_thread(self.build_sync, version)

    def build_sync(self, version: str) -> Artifact:
        started = time.monotonic()
        digest = content_hash(self._source)
        sha = git_sha(self._source)
        folder = self._dir / digest
        manifest = folder / "artifact.json"
        cache_hit = manifest.exists()
        if cache_hit:
            wheel = folder / json.loads(manifest.read_text())["wheel"]
        else:
            wheel = self._build_wheel(folder)
            manifest.write_text(
                json.dumps(
                    {
                        "wheel": wheel.name,
                        "content_hash": digest,
                        "git_sha": sha,
                        "built_at": datetime.now(UTC).isoformat(),
                    },
                    indent=2,
                )
            )
        tags = self._dir / "tags"
        tags.mkdir(parents=True, exist_ok=True)
        (tags / f"{version}.json").write_text(json.dumps({"version": version, "content_hash": digest, "git_sha": sha}))
        return Artifact(
            ArtifactKind.WHEEL, str(wheel), version, sha, digest, cache_hit, round(time.monotonic() - started, 3)
        )

    def _build_wheel(self, folder: Path) -> Path:
        self._dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._dir, prefix=".build-") as tmp:
            out = Path(tmp) / "dist"
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--no-deps",
                    "--no-build-isolation",
                    "--quiet",
                    "--wheel-dir",
                    str(out),
                    str(self._source),
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            wheels = sorted(out.glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                raise BuildError(f"wheel build failed: {(proc.stderr or proc.stdout).strip()[-1000:]}")
            staging = Path(tmp) / "artifact"
            staging.mkdir()
            shutil.copy2(wheels[0], staging / wheels[0].name)
            staging.replace(folder)
        return folder / wheels[0].name
