"""``buildah``: images built on this machine for its own architecture, kept in buildah's local store.

``buildah bud --isolation chroot --layers --format docker`` (chroot isolation needs no container runtime; docker
format keeps the HEALTHCHECK, which the OCI image format drops). The digest recorded is the local manifest's; with
``push`` the image goes to the registry under each tag, logged in through an auth file only we can read, and the
digest recorded is the registry's.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sophia.build.images import BuiltImage, ImageRequest
from sophia.build.process import ToolError, run_tool

_STEP = re.compile(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: (\w+)", re.MULTILINE)
_CACHED = re.compile(r"^--> Using cache ", re.MULTILINE)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def count_steps(output: str) -> tuple[int, int]:
    """(steps, cached steps) of a ``buildah bud --layers`` log; FROM steps make nothing and are not counted."""
    steps = sum(1 for m in _STEP.finditer(output) if m.group(1).upper() != "FROM")
    return steps, len(_CACHED.findall(output))


class BuildahTool:
    name = "buildah"

    def __init__(
        self, *, registry: str, username: str, token: str | None, push: bool, executable: str = "buildah"
    ) -> None:
        self._registry = registry
        self._username = username
        self._token = token
        self._push = push
        self._exe = executable

    def prepare(self) -> None:
        if shutil.which(self._exe) is None:
            raise ToolError(f"{self._exe}: not installed (apt-get install buildah)")
        if self._push and not self._token:
            raise ToolError("release.images.push: pushing to the registry needs GITHUB_TOKEN")

    def build(self, request: ImageRequest, dockerfile: Path, context: Path) -> BuiltImage:
        with tempfile.TemporaryDirectory(prefix="sophia-buildah-") as tmp:
            iidfile = Path(tmp) / "iid"
            argv = [self._exe, "bud", "--isolation", "chroot", "--layers", "--format", "docker"]
            argv += ["--file", str(dockerfile), "--iidfile", str(iidfile)]
            for key, value in request.build_args.items():
                argv += ["--build-arg", f"{key}={value}"]
            for tag in request.tags:
                argv += ["--tag", tag]
            result = run_tool([*argv, str(context)])
            steps, cached = count_steps(result.output)
            image_id = iidfile.read_text().strip()
            digest = run_tool(
                [self._exe, "inspect", "--type", "image", "--format", "{{.FromImageDigest}}", image_id]
            ).output.strip()
            if self._push:
                digest = self._push_tags(image_id, request.tags, Path(tmp))
        if not _DIGEST.match(digest):
            raise ToolError(f"buildah gave no digest for {request.repository}: {digest[:200]!r}")
        return BuiltImage(request.service, digest, steps, cached)

    def _push_tags(self, image_id: str, tags: tuple[str, ...], tmp: Path) -> str:
        authfile = tmp / "auth.json"
        auth = base64.b64encode(f"{self._username}:{self._token}".encode()).decode()
        authfile.touch(mode=0o600)
        authfile.write_text(json.dumps({"auths": {self._registry: {"auth": auth}}}))
        digest = ""
        for tag in tags:
            digestfile = tmp / "digest"
            run_tool(
                [self._exe, "push", "--authfile", str(authfile), "--digestfile", str(digestfile), image_id,
                 f"docker://{tag}"],
                secrets=[self._token or "", auth],
            )  # fmt: skip
            digest = digestfile.read_text().strip()
        return digest

    @contextlib.contextmanager
    def filesystem(self, image: BuiltImage, request: ImageRequest) -> Iterator[Path | None]:
        """The image's files, mounted from a working container that is removed afterwards."""
        reference = request.tags[-1] if request.tags else image.digest
        container = run_tool([self._exe, "from", "--pull=never", reference]).output.strip().splitlines()[-1]
        try:
            mount = run_tool([self._exe, "mount", container]).output.strip().splitlines()[-1]
            yield Path(mount)
        finally:
            run_tool([self._exe, "umount", container], check=False)
            run_tool([self._exe, "rm", container], check=False)
