"""The guide's two scripts (``validate_all_services.py``, ``synthetic_checks.py``) over real services on 127.0.0.1.

Standalone (``--url NAME=URL``): exit 0 against healthy services, 1 against a broken canary, with the JUnit XML
parsed here, the step summary appended and ``::error`` annotations printed as in GitHub Actions; bad input exits 2
with nothing written. Against the platform of the configuration (here a local platform that is not running), the
failure to ask it is itself a failed check in the JUnit file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sophia.services.sandbox import ensure_sandbox_schema
from tests.conftest import free_port
from tests.e2e.conftest import REPO, write_config
from tests.fakes.service_app import TOKEN, analytics_url
from tests.fakes.service_process import ServiceProcess, start_service

KINDS = {"comms-mcp": "comms", "crm-mcp": "crm", "analytics-mcp": "analytics"}
SCRIPTS = REPO / "scripts"


def run(script: str, config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True, timeout=120, check=False,
        env={**environ, "COLUMNS": "200", "PYTHONPATH": str(REPO / "src"), "SOPHIA_CONFIG": str(config), **env},
    )  # fmt: skip


def start(database_url: str, comms_faults: str = "") -> dict[str, ServiceProcess]:
    ensure_sandbox_schema(database_url)
    role_url = analytics_url(database_url)
    started = {}
    for name, kind in KINDS.items():
        faults = comms_faults if name == "comms-mcp" else ""
        env = {"SOPHIA_VERSION": "v2.0.0", "SOPHIA_TRACK": "canary", "DATABASE_URL": database_url,
               "ANALYTICS_DATABASE_URL": role_url, "SOPHIA_FAULTS": faults}  # fmt: skip
        started[name] = start_service(name, kind, env)
    return started


@pytest.fixture
def healthy(database_url: str) -> Iterator[dict[str, ServiceProcess]]:
    started = start(database_url)
    yield started
    for process in started.values():
        process.stop()


@pytest.fixture
def broken(database_url: str) -> Iterator[dict[str, ServiceProcess]]:
    started = start(database_url, comms_faults="error_rate=1")
    yield started
    for process in started.values():
        process.stop()


def urls(services: dict[str, ServiceProcess]) -> list[str]:
    return [arg for name, p in services.items() for arg in ("--url", f"{name}={p.base_url}")]


def in_github(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
            "DATABASE_URL": database_url, "SOPHIA_API_TOKEN": TOKEN}  # fmt: skip


def junit(path: Path) -> dict[str, str | None]:
    """Each test case's name → its failure message (None when it passed or was skipped)."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {
        str(case.get("name")): (None if (f := case.find("failure")) is None else f.get("message"))
        for case in root.iter("testcase")
    }


def test_validate_canary_passes_against_healthy_services(
    healthy: dict[str, ServiceProcess], database_url: str, tmp_path: Path
) -> None:
    config, report = write_config(tmp_path, tmp_path / ".sophia"), tmp_path / "out" / "validate.xml"
    env = in_github(tmp_path, database_url)
    result = run("validate_all_services.py", config, "--canary", *urls(healthy), "--junit", str(report), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = junit(report)
    assert cases["comms-mcp canary /health"] is None
    assert cases["analytics-mcp canary /ready"] is None
    assert all(message is None for message in cases.values())
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("### sophia validate --canary — ✅ 6 passed, 3 skipped")
    assert "| comms-mcp canary placement | ⏭ skipped |" in summary  # standalone: the weight is not known, not passed
    assert "::error" not in result.stdout


def test_validate_canary_fails_on_a_broken_canary_naming_it(
    broken: dict[str, ServiceProcess], database_url: str, tmp_path: Path
) -> None:
    config, report = write_config(tmp_path, tmp_path / ".sophia"), tmp_path / "validate.xml"
    env = in_github(tmp_path, database_url)
    result = run("validate_all_services.py", config, "--canary", *urls(broken), "--junit", str(report), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    cases = junit(report)
    assert cases["comms-mcp canary /health"] == "HTTP 500"
    assert cases["crm-mcp canary /health"] is None
    assert ET.parse(report).getroot().get("failures") == "1"
    assert "### sophia validate --canary — ❌ 1 of 9 failed, 3 skipped" in (tmp_path / "summary.md").read_text()
    assert "::error title=sophia validate --canary%3A comms-mcp canary /health::HTTP 500" in result.stdout


def test_synthetics_pass_against_healthy_services_and_fail_on_a_broken_canary(
    healthy: dict[str, ServiceProcess], database_url: str, tmp_path: Path
) -> None:
    config, report = write_config(tmp_path, tmp_path / ".sophia"), tmp_path / "synthetics.xml"
    env = in_github(tmp_path, database_url)
    result = run("synthetic_checks.py", config, *urls(healthy), "--junit", str(report), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert junit(report) == {
        "slack-post (comms-mcp)": None,
        "crm-task (crm-mcp)": None,
        "neon-query (analytics-mcp)": None,
    }
    assert "### sophia synthetics — ✅ 3 passed" in (tmp_path / "summary.md").read_text()

    healthy["comms-mcp"].stop()
    faulty = {"SOPHIA_VERSION": "v2.0.0", "DATABASE_URL": database_url, "SOPHIA_FAULTS": "error_rate=1"}
    healthy["comms-mcp"] = start_service("comms-mcp", "comms", faulty)  # the canary breaks: every request fails
    failed = run("synthetic_checks.py", config, *urls(healthy), "--junit", str(report), env=env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    message = junit(report)["slack-post (comms-mcp)"]
    assert message is not None
    assert "answered HTTP 500" in message
    assert (
        "::error title=sophia synthetics%3A slack-post (comms-mcp)::POST /slack/post answered HTTP 500" in failed.stdout
    )
    assert TOKEN not in (tmp_path / "summary.md").read_text() + report.read_text() + failed.stdout


@pytest.mark.parametrize(
    ("script", "args", "env", "words"),
    [
        ("validate_all_services.py", ["--canary", "--production"], {}, "--canary and --production exclude each other"),
        ("validate_all_services.py", ["--url", "billing=http://127.0.0.1:1"], {}, "unknown service 'billing'"),
        ("validate_all_services.py", ["--url", "comms-mcp=127.0.0.1:1"], {}, "bad URL '127.0.0.1:1' for comms-mcp"),
        ("synthetic_checks.py", [], {"SOPHIA_SERVICE_URLS": "comms-mcp=http://a:1,crm-mcp"}, "malformed service URL"),
        ("synthetic_checks.py", ["--url", "comms-mcp=ftp://a"], {}, "bad URL 'ftp://a'"),
        ("validate_all_services.py", ["--canary", "--weight", "10"], {}, "No such option: --weight"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message_and_nothing_written(
    tmp_path: Path, script: str, args: list[str], env: dict[str, str], words: str
) -> None:
    config, report, summary = write_config(tmp_path, tmp_path / ".sophia"), tmp_path / "r.xml", tmp_path / "summary.md"
    result = run(script, config, *args, "--junit", str(report), env={**env, "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert not report.exists()
    assert not summary.exists()


def test_a_junit_path_that_is_a_folder_is_bad_input(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / ".sophia")
    result = run("synthetic_checks.py", config, "--junit", str(tmp_path), env={})
    assert result.returncode == 2
    assert "is a folder" in result.stderr


def test_validate_against_a_platform_that_is_not_running_is_a_failed_check(tmp_path: Path) -> None:
    config, report = write_config(tmp_path, tmp_path / ".sophia"), tmp_path / "validate.xml"
    result = run("validate_all_services.py", config, "--production", "--junit", str(report), env={})
    assert result.returncode == 1, result.stdout + result.stderr
    ((name, message),) = junit(report).items()
    assert name == "local platform"
    assert message == "the local platform is not running: start it with `sophia local up`"


def test_a_monitoring_url_s_password_never_reaches_the_reports(
    healthy: dict[str, ServiceProcess], database_url: str, tmp_path: Path
) -> None:
    config, report = write_config(tmp_path, tmp_path / ".sophia"), tmp_path / "validate.xml"
    raw = yaml.safe_load(config.read_text())
    port = free_port()  # nothing listens there: the check fails, naming the URL
    raw["profiles"]["local"]["readiness"] = {"monitoring": [f"http://admin:pw-{TOKEN}@127.0.0.1:{port}/-/ready"]}
    config.write_text(yaml.safe_dump(raw))
    env = in_github(tmp_path, database_url)
    result = run("validate_all_services.py", config, "--production", *urls(healthy), "--junit", str(report), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = {name: message for name, message in junit(report).items() if message}
    assert list(failed) == [f"monitoring http://admin:***@127.0.0.1:{port}/-/ready"]
    written = result.stdout + result.stderr + report.read_text() + (tmp_path / "summary.md").read_text()
    assert TOKEN not in written
    assert "admin:***@" in written
