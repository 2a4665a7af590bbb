"""build-cache's figures with buildah on this machine: a cold and a warm (cache hit) build of all 12 service
images, and each image's size.

Cold means an empty buildah store of its own (``CONTAINERS_STORAGE_CONF`` pointing at a temporary graph root; the
locally made Debian base is imported into it first, from the cached root filesystem, and not timed). pip's
download cache (the Dockerfile's ``--mount=type=cache``) lives in that store too, so cold downloads every package.
Warm is the same build again: every step reused (a commit in between changes the revision label, so the
per-service steps rebuild: leave the checkout alone while it runs). Both include the SBOM and scans (pip-audit
needs PyPI).

Usage: .venv/bin/python benchmarks/build.py [--no-scan]
Last line: ``build: cold_s=N warm_s=N image_mib=N`` (image_mib: the largest image).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sophia import wiring  # noqa: E402
from sophia.build.images import ImageBuilder  # noqa: E402
from sophia.config import load_config  # noqa: E402

BASE = "localhost/sophia-base:bookworm"
VERSION = "v0.0.1-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-scan", action="store_true", help="leave out the SBOM and scans")
    args = parser.parse_args()
    if shutil.which("buildah") is None or os.geteuid() != 0:
        sys.exit("needs root and buildah (ci/install-buildah.sh)")
    with tempfile.TemporaryDirectory(prefix="sophia-bench-build-") as tmp:
        store = Path(tmp)
        conf = store / "storage.conf"
        conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{store}/graph"\nrunroot = "{store}/run"\n')
        os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
        subprocess.run(["bash", str(ROOT / "tools/images/local-base.sh"), BASE], check=True, stdout=subprocess.DEVNULL)
        settings = load_config(ROOT / "sophia.yaml", env={}, overrides={
            "state_dir": str(store / "state"),
            "release": {"registry": "localhost", "owner": "sophia-bench", "builder": "buildah",
                        "images": {"base": BASE, "scan": not args.no_scan}},
        })  # fmt: skip
        builder = wiring.builder(settings)
        assert isinstance(builder, ImageBuilder)
        timings = []
        for label in ("cold", "warm"):
            started = time.monotonic()
            artifact = builder.build_sync(VERSION)
            seconds = time.monotonic() - started
            timings.append(seconds)
            print(f"{label}: {seconds:.1f}s for {len(artifact.images)} images, cache_hit={artifact.cache_hit}")
        for scan in artifact.scans:
            print(f"scan {scan['tool']}: {scan['status']} {scan.get('findings', scan.get('reason', ''))}")
        images = subprocess.run(["buildah", "images", "--format", "{{.Name}}:{{.Tag}} {{.Size}}"],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        for line in sorted(images.splitlines()):
            if "sophia-bench" in line and VERSION in line:
                print(f"image {line}")
        subprocess.run(["buildah", "rm", "--all"], capture_output=True, check=False)
        subprocess.run(["buildah", "rmi", "--all", "--force"], capture_output=True, check=False)
        mib = _largest_mib(images)
        print(f"build: cold_s={timings[0]:.1f} warm_s={timings[1]:.1f} image_mib={mib:.0f}")


def _largest_mib(listing: str) -> float:
    units = {"B": 1 / 2**20, "KB": 1000 / 2**20, "kB": 1000 / 2**20, "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}
    best = 0.0
    for line in listing.splitlines():
        if "sophia-bench" not in line:
            continue
        size = line.split(" ", 1)[1].strip()
        number, _, unit = size.partition(" ")
        best = max(best, float(number) * units.get(unit, 1))
    return best


if __name__ == "__main__":
    main()
