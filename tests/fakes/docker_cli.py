"""A fake ``docker`` executable that answers like the buildx plugin and records how it was called.

``install(folder)`` writes ``folder/docker`` (a Python script); put ``folder`` first on PATH. Every call appends
``{"argv": [...], "stdin": "..."}`` to ``folder/calls.jsonl``. ``docker login --password-stdin`` succeeds only with
the token in ``FAKE_DOCKER_TOKEN``; ``docker buildx build`` prints a ``--progress plain`` log and writes the
``--metadata-file`` with a digest derived from its tags and build arguments. Its "registry cache" is a folder: a
build whose ``--cache-from`` ref was earlier written by ``--cache-to`` with the same build arguments reports every
step CACHED, as BuildKit does when it imports a complete cache.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

SCRIPT = r"""#!PYTHON
import hashlib, json, os, sys
from pathlib import Path

here = Path(__file__).resolve().parent
args = sys.argv[1:]
stdin = "" if sys.stdin.isatty() else sys.stdin.read()
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({"argv": args, "stdin": stdin}) + "\n")

def value(flag):
    return [args[i + 1] for i, a in enumerate(args) if a == flag]

if args[:2] == ["buildx", "version"]:
    print("github.com/docker/buildx v0.19.3 fake")
    sys.exit(0)
if args[:1] == ["login"]:
    if "--password-stdin" in args and stdin.strip() == os.environ.get("FAKE_DOCKER_TOKEN", ""):
        print("Login Succeeded")
        sys.exit(0)
    print("Error response from daemon: unauthorized", file=sys.stderr)
    sys.exit(1)
if args[:2] == ["buildx", "build"]:
    build_args = sorted(value("--build-arg"))
    key = hashlib.sha256(json.dumps(build_args).encode()).hexdigest()
    cache = here / "registry-cache"
    cache.mkdir(exist_ok=True)
    source = [v.split("ref=", 1)[1] for v in value("--cache-from")]
    hit = bool(source) and (cache / hashlib.sha256((source[0] + key).encode()).hexdigest()).exists()
    steps = ["FROM docker.io/library/python", "RUN python3 -m venv /opt/venv", "COPY src /src/src",
             "RUN /opt/venv/bin/pip install --no-deps /src", "COPY --from=build /opt/venv /opt/venv"]
    for n, step in enumerate(steps, start=3):
        print(f"#{n} [build {n - 2}/{len(steps)}] {step}")
        print(f"#{n} CACHED" if hit else f"#{n} DONE 0.1s")
    for target in value("--cache-to"):
        ref = target.split("ref=", 1)[1].split(",", 1)[0]
        (cache / hashlib.sha256((ref + key).encode()).hexdigest()).touch()
    digest = "sha256:" + hashlib.sha256(json.dumps([value("--tag"), build_args]).encode()).hexdigest()
    Path(value("--metadata-file")[0]).write_text(json.dumps({"containerimage.digest": digest}))
    print(f"#20 pushing manifest list {digest} done")
    sys.exit(0)
print(f"docker: unknown command: {' '.join(args)}", file=sys.stderr)
sys.exit(1)
"""


def install(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "docker"
    exe.write_text(SCRIPT.replace("PYTHON", sys.executable, 1))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def calls(folder: Path) -> list[dict[str, object]]:
    path = folder / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def path_with(folder: Path) -> str:
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
