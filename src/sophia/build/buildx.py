"""``docker buildx``: multi-architecture images pushed to the registry, with the registry as the build cache.

One ``docker buildx build`` per service: ``--platform linux/amd64,linux/arm64``, every tag, ``--cache-from`` and
``--cache-to`` (``mode=max``) a ``:buildcache`` tag of the service's repository, ``--push``, and a
``--metadata-file`` from which the pushed manifest list's digest is read. The login is ``docker login
--password-stdin``: the token goes to docker's standard input, never into an argv or a log.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path

from sophia.build.images import BuiltImage, ImageRequest, no_filesystem
from sophia.build.process import ToolError, run_tool

_HEADING = re.compile(r"^#(\d+) \[(?:[\w.-]+ )?\d+/\d+\] (\w+)", re.MULTILINE)
_CACHED = re.compile(r"^#(\d+) CACHED\s*$", re.MULTILINE)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def count_steps(output: str) -> tuple[int, int]:
    """(steps, cached steps) of a ``--progress plain`` log; FROM steps are not counted."""
    steps = {m.group(1) for m in _HEADING.finditer(output) if m.group(2).upper() != "FROM"}
    cached = {m.group(1) for m in _CACHED.finditer(output)} & steps
    return len(steps), len(cached)


def available(executable: str = "docker") -> bool:
    """True when docker has the buildx plugin (``docker buildx version`` answers)."""
    if shutil.which(executable) is None:
        return False
    try:
        return run_tool([executable, "buildx", "version"], check=False, timeout_s=20).returncode == 0
    except ToolError:
        return False


class BuildxTool:
    name = "buildx"

    def __init__(
        self,
        *,
        registry: str,
        username: str,
        token: str | None,
        platforms: list[str],
        cache_tag: str,
        executable: str = "docker",
    ) -> None:
        self._registry = registry
        self._username = username
        self._token = token
        self._platforms = platforms
        self._cache_tag = cache_tag
        self._exe = executable

    def prepare(self) -> None:
        if not available(self._exe):
            raise ToolError(f"{self._exe} buildx: not installed")
        if not self._token:
            raise ToolError("docker buildx pushes to the registry, which needs GITHUB_TOKEN")
        run_tool(
            [self._exe, "login", self._registry, "--username", self._username, "--password-stdin"],
            stdin=self._token,
            secrets=[self._token],
        )

    def command(self, request: ImageRequest, dockerfile: Path, context: Path, metadata: Path) -> list[str]:
        """The exact ``docker buildx build`` argv for one service."""
        cache = f"{request.repository}:{self._cache_tag}"
        argv = [self._exe, "buildx", "build", "--file", str(dockerfile), "--platform", ",".join(self._platforms)]
        for key, value in request.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        for tag in request.tags:
            argv += ["--tag", tag]
        argv += ["--cache-from", f"type=registry,ref={cache}", "--cache-to", f"type=registry,ref={cache},mode=max"]
        argv += ["--metadata-file", str(metadata), "--progress", "plain", "--push", str(context)]
        return argv

    def build(self, request: ImageRequest, dockerfile: Path, context: Path) -> BuiltImage:
        with tempfile.TemporaryDirectory(prefix="sophia-buildx-") as tmp:
            metadata = Path(tmp) / "metadata.json"
            result = run_tool(self.command(request, dockerfile, context, metadata), secrets=[self._token or ""])
            try:
                digest = str(json.loads(metadata.read_text())["containerimage.digest"])
            except (OSError, ValueError, KeyError):
                raise ToolError(f"docker buildx wrote no image digest for {request.repository}") from None
        if not _DIGEST.match(digest):
            raise ToolError(f"docker buildx gave a malformed digest for {request.repository}: {digest[:80]!r}")
        steps, cached = count_steps(result.output)
        return BuiltImage(request.service, digest, steps, cached)

    def filesystem(self, image: BuiltImage, request: ImageRequest) -> AbstractContextManager[Path | None]:
        """None: the image is only in the registry."""
        return no_filesystem()
