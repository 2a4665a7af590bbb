"""Headless Chromium for browser tests: Debian's ``/usr/bin/chromium`` driven by Playwright (no browser download).

``$SOPHIA_CHROMIUM`` names another binary; without it, Debian's Chromium, else a Google Chrome on the PATH (what
GitHub's Ubuntu runners carry). Without any (or without Playwright) a test is skipped, except under CI
(``CI=true``), where it fails: CI installs the browser with ``ci/install-chromium.sh``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CANDIDATES = ("/usr/bin/chromium", "chromium", "google-chrome")
# The machine's network is closed: without these, Chromium's background connections are refused many at a time.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip


def chromium_path() -> str | None:
    """The browser binary to drive: ``$SOPHIA_CHROMIUM`` if set, else the first candidate found."""
    chosen = os.environ.get("SOPHIA_CHROMIUM")
    return shutil.which(chosen) if chosen else next(filter(None, map(shutil.which, CANDIDATES)), None)


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message}; under CI a missing browser fails the test (ci/install-chromium.sh)", pytrace=False)
    pytest.skip(message)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A Playwright browser (headless Debian Chromium) with a fresh profile, closed after the block."""
    executable = chromium_path()
    if executable is None:
        _missing(f"no Chromium ({os.environ.get('SOPHIA_CHROMIUM') or ', '.join(CANDIDATES)})")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    async with async_playwright() as p:  # launch() gives the browser a new, empty profile of its own
        browser = await p.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


def artifacts_dir(default: Path) -> Path:
    """Where screenshots go: ``$SOPHIA_TEST_ARTIFACTS`` (CI uploads it), else the test's own tmp_path."""
    folder = Path(os.environ.get("SOPHIA_TEST_ARTIFACTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
