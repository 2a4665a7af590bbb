"""The service image installs the sophia-release wheel without its dependencies plus docker/requirements.txt, so
that file must name the distribution of every third-party module the services import."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path


def _imported_top_modules(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "sophia"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_service_import_is_in_the_image_requirements(repo_root: Path) -> None:
    lines = (repo_root / "docker" / "requirements.txt").read_text().splitlines()
    required = {_normalize(re.split(r"[\s\[<>=;!~]", line.strip(), maxsplit=1)[0]) for line in lines
                if line.strip() and not line.startswith("#")}  # fmt: skip
    owners = importlib.metadata.packages_distributions()
    missing = {}
    for module in _imported_top_modules(repo_root / "src" / "sophia" / "services"):
        dists = {_normalize(d) for d in owners.get(module, [module])}
        if not dists & required:
            missing[module] = sorted(dists)
    assert missing == {}
