"""Build tooling: the release wheel cached by content, and lint/test commands run with a timeout."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

from sophia.build.commands import SubprocessRunner
from sophia.build.wheel import WheelBuilder, content_hash

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "tinyapp"
version = "0.1.0"

[tool.hatch.build.targets.wheel]
packages = ["src/tinyapp"]
"""


def project(root: Path) -> Path:
    (root / "src" / "tinyapp").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "README.md").write_text("tiny\n")
    (root / "src" / "tinyapp" / "__init__.py").write_text("VALUE = 1\n")
    return root


def test_the_same_tree_is_a_cache_hit_and_any_edit_a_miss(tmp_path: Path) -> None:
    source = project(tmp_path / "src-tree")
    builder = WheelBuilder(source, tmp_path / "artifacts")
    first = builder.build_sync("v1.0.0")
    assert not first.cache_hit
    assert first.path.exists()
    with zipfile.ZipFile(first.path) as wheel:
        assert wheel.read("tinyapp/__init__.py") == b"VALUE = 1\n"
    again = builder.build_sync("v1.1.0")  # another release of the same content
    assert again.cache_hit
    assert (again.path, again.content_hash) == (first.path, first.content_hash)
    assert (tmp_path / "artifacts" / "tags" / "v1.1.0.json").exists()
    (source / "src" / "tinyapp" / "__pycache__").mkdir()
    (source / "src" / "tinyapp" / "__pycache__" / "x.pyc").write_bytes(b"ignored")
    assert content_hash(source) == first.content_hash  # bytecode is not part of the release
    (source / "src" / "tinyapp" / "__init__.py").write_text("VALUE = 2\n")
    changed = builder.build_sync("v1.2.0")
    assert not changed.cache_hit
    assert changed.content_hash != first.content_hash
    with zipfile.ZipFile(changed.path) as wheel:
        assert wheel.read("tinyapp/__init__.py") == b"VALUE = 2\n"


def test_the_same_content_in_another_folder_hashes_the_same(tmp_path: Path) -> None:
    one = project(tmp_path / "one")
    two = tmp_path / "two"
    shutil.copytree(one, two)
    assert content_hash(one) == content_hash(two)


async def test_commands_report_exit_codes_output_and_timeouts(tmp_path: Path) -> None:
    runner = SubprocessRunner(tmp_path)
    ok = await runner.run([sys.executable, "-c", "print('all good')"], 30)
    assert (ok.returncode, ok.output_tail.strip()) == (0, "all good")
    bad = await runner.run([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], 30)
    assert (bad.returncode, bad.output_tail.strip()) == (3, "boom")
    slow = await runner.run([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert slow.returncode == 124
    assert "timed out after 0.5s" in slow.output_tail
    assert slow.duration_s < 10
    missing = await runner.run(["no-such-tool-anywhere"], 5)
    assert missing.returncode == 127
