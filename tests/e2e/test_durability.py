"""Runs survive crashes, one run per environment, stage by stage, and stopping a run by hand — real processes.

To kill the engine *inside* a stage, each stage is given room: lint-test runs a two-second command, build-cache
builds a fresh wheel (the source copy is touched before every run), migrate-neon applies a migration that sleeps,
synthetics waits on an analytics canary that the test freezes with SIGSTOP, and the others take seconds anyway.
The test watches the run store and sends SIGKILL the moment the stage is recorded as running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sophia.config import STAGE_NAMES
from tests.e2e.conftest import REPO, Cli, leftovers

pytestmark = pytest.mark.slow


def config_changes(home: Path) -> dict[str, Any]:
    source = home / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "ops", source / "ops")
    return {
        "source_dir": str(source),
        "lint-test": {"commands": [["python", "-c", "import time; time.sleep(2)"]]},
    }


def source(cli: Cli) -> Path:
    return Path(cli.settings["source_dir"])


def prepare_slow_stages(cli: Cli, label: str) -> None:
    """A content change (build-cache really builds) and a migration that takes a moment (migrate-neon lasts)."""
    marker = source(cli) / "src" / "sophia" / "_rehearsal.py"
    marker.write_text(f'"""Rehearsal marker: {label}."""\n')
    migrations = source(cli) / "ops" / "sql"
    number = max(int(p.name[:3]) for p in migrations.glob("[0-9][0-9][0-9]_*.sql")) + 1
    (migrations / f"{number:03d}_pause_{label.replace('-', '_')}.sql").write_text(
        "-- Takes a moment so a test can kill the engine in the middle of migrate-neon.\nSELECT pg_sleep(1.5);\n"
    )


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.01, why: Callable[[], str] = str
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}: {why()}")


def stages_of(cli: Cli, run_id: str) -> str:
    """What the run store says about each stage (to explain a wait that timed out)."""
    with psycopg.connect(cli.database_url()) as conn:
        row = conn.execute("SELECT record FROM sophia_engine.runs WHERE run_id = %s", (run_id,)).fetchone()
    if row is None:
        return "no record"
    return "; ".join(f"{s['name']} {s['status']} {s['detail'][:200]}" for s in row[0]["stages"])


def newest_run(cli: Cli, after: set[str]) -> str | None:
    fresh = known_runs(cli) - after
    return next(iter(fresh)) if fresh else None


def known_runs(cli: Cli) -> set[str]:
    with psycopg.connect(cli.database_url()) as conn:
        exists = conn.execute("SELECT to_regclass('sophia_engine.runs') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return set()
        return {r[0] for r in conn.execute("SELECT run_id FROM sophia_engine.runs").fetchall()}


def stage_status(cli: Cli, run_id: str, stage: str) -> str | None:
    with psycopg.connect(cli.database_url()) as conn:
        row = conn.execute("SELECT record FROM sophia_engine.runs WHERE run_id = %s", (run_id,)).fetchone()
    if row is None:
        return None
    status: str = next(s["status"] for s in row[0]["stages"] if s["name"] == stage)
    return status


def canary_pid(cli: Cli, service: str) -> int | None:
    state = json.loads((cli.state_dir / "local" / "platform.json").read_text())
    canary = state["services"][service]["canary"]
    return None if canary is None else int(canary["pid"])


def stable_version(cli: Cli) -> str:
    versions = {(s["stable_version"], s["canary_version"], s["canary_weight"]) for s in cli.status()}
    assert len(versions) == 1, f"services are split: {versions}"
    (stable, canary, weight), *_ = versions
    assert (canary, weight) == (None, 0)
    return str(stable)


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_crash_inside_any_stage_is_recovered_by_resume(cli: Cli, stage: str) -> None:
    before = stable_version(cli)
    version = f"v3.{STAGE_NAMES.index(stage)}.0"
    prepare_slow_stages(cli, stage)
    runs = known_runs(cli)
    deploy = cli.start("deploy", "--version", version)
    frozen: int | None = None
    try:
        run_id = wait_for("the run to be recorded", lambda: newest_run(cli, runs))
        if stage == "synthetics":
            # Freeze the analytics canary while migrations run, so the synthetic Neon query hangs.
            wait_for("migrate-neon", lambda: stage_status(cli, run_id, "migrate-neon") == "running", timeout=120,
                     why=lambda: stages_of(cli, run_id))  # fmt: skip
            frozen = canary_pid(cli, "analytics-mcp")
            assert frozen is not None
            os.kill(frozen, signal.SIGSTOP)
        wait_for(f"{stage} to start", lambda: stage_status(cli, run_id, stage) == "running", timeout=120,
                 why=lambda: stages_of(cli, run_id))  # fmt: skip
        deploy.send_signal(signal.SIGKILL)
        deploy.wait(timeout=10)
    finally:
        if deploy.poll() is None:
            deploy.kill()
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
    assert stage_status(cli, run_id, stage) == "running"

    # The run is still the environment's active run: another deploy is refused, naming it and the way out.
    reports_before = cli.runs()
    refused = cli("deploy", "--version", "v9.9.9", "--skip", "lint-test")
    assert refused.returncode == 2
    assert cli.runs() == reports_before  # refused at the door: no run, no report
    assert run_id in refused.stderr
    assert f"sophia resume {run_id}" in refused.stderr

    resumed = cli("resume", run_id, timeout=300)
    report = json.loads(cli("runs", "show", run_id, "--json").stdout)
    expected = "rolled_back" if stage == "canary-deploy" else "promoted"
    assert report["outcome"] == expected, resumed.stdout + resumed.stderr
    assert resumed.returncode == (1 if expected == "rolled_back" else 0)
    assert stable_version(cli) == (before if expected == "rolled_back" else version)
    assert any(e["message"].startswith("took the environment over") for e in report["events"])
    assert any(e["message"].startswith("resumed by") for e in report["events"])


def test_two_deploys_started_together_one_runs_the_other_is_refused(cli: Cli) -> None:
    first = cli.start("deploy", "--version", "v4.0.0", "--skip", "lint-test")
    second = cli.start("deploy", "--version", "v4.0.1", "--skip", "lint-test")
    results = [p.communicate(timeout=300) for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], results
    refused_stderr = results[[first.returncode, second.returncode].index(2)][1]
    assert "is in use by run" in refused_stderr
    assert stable_version(cli) in {"v4.0.0", "v4.0.1"}


def test_seven_stage_commands_reproduce_a_deploy(cli: Cli) -> None:
    whole = cli("deploy", "--version", "v5.0.0", "--skip", "lint-test", timeout=300)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    deployed = cli.report()
    planned = cli("plan", "--version", "v5.0.1", "--skip", "lint-test")
    assert planned.returncode == 0, planned.stderr
    run_id = planned.stdout.strip()
    out_of_order = cli("stage", "canary-deploy", "--run", run_id)
    assert out_of_order.returncode == 2
    assert "out of order" in out_of_order.stderr
    assert "the next stage is lint-test" in out_of_order.stderr
    for stage in STAGE_NAMES:
        step = cli("stage", stage, "--run", run_id, timeout=300)
        assert step.returncode == 0, step.stdout + step.stderr
    staged = json.loads(cli("runs", "show", run_id, "--json").stdout)

    def shape(report: dict[str, Any]) -> dict[str, Any]:
        return {
            "outcome": report["outcome"],
            "stages": [(s["name"], s["status"], s["budget_s"]) for s in report["stages"]],
            "services": sorted((s["name"], s["canary_version"], s["canary_weight"]) for s in report["services"]),
            "content": report["artifact"]["content_hash"],
            "rollback": report["rollback"],
        }

    assert shape(staged) == shape(deployed)
    assert stable_version(cli) == "v5.0.1"
    done = cli("stage", "readiness-check", "--run", run_id)
    assert done.returncode == 2
    assert "promoted" in done.stderr


def test_abort_stops_a_running_deploy_and_rolls_it_back(cli: Cli) -> None:
    before = stable_version(cli)
    runs = known_runs(cli)
    deploy = cli.start("deploy", "--version", "v6.0.0", "--skip", "lint-test")
    run_id = wait_for("the run", lambda: newest_run(cli, runs))
    wait_for("the canary", lambda: stage_status(cli, run_id, "canary-deploy") == "running", timeout=120)
    aborted = cli("abort", "--reason", "the dashboard looks wrong")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    deploy.communicate(timeout=60)
    assert deploy.returncode == 1
    report = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert report["outcome"] == "aborted"
    assert "the dashboard looks wrong" in report["rollback"]["reason"]
    assert stable_version(cli) == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["resume", "r-nope"], "no run with id 'r-nope'"),
        (["stage", "lint-test", "--run", "r-nope"], "no run with id 'r-nope'"),
        (["runs", "show", "r-nope"], "no run with id 'r-nope'"),
        (["stage", "linting", "--run", "r-nope"], "unknown stage 'linting'"),
        (["rollback"], "has no active run"),
    ],
)
def test_bad_run_input_exits_2(cli: Cli, args: list[str], words: str) -> None:
    before = cli("runs", "list", "--json").stdout
    result = cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr
    assert cli("runs", "list", "--json").stdout == before


def test_a_corrupt_run_record_is_reported_and_left_alone(cli: Cli) -> None:
    newest = json.loads(cli("runs", "list", "--json").stdout)["runs"][0]["run_id"]
    with psycopg.connect(cli.database_url(), autocommit=True) as conn:
        conn.execute("UPDATE sophia_engine.runs SET record = '{\"stages\": 7}' WHERE run_id = %s", (newest,))
    for args in (["runs", "show", newest], ["resume", newest]):
        result = cli(*args)
        assert result.returncode == 2
        assert f"the stored record of run {newest} is corrupt" in result.stderr
    with psycopg.connect(cli.database_url()) as conn:
        row = conn.execute("SELECT record::text FROM sophia_engine.runs WHERE run_id = %s", (newest,)).fetchone()
    assert row == ('{"stages": 7}',)
    stable_version(cli)  # the platform was not touched


def test_every_deployment_action_is_in_the_audit_trail(cli: Cli) -> None:
    with psycopg.connect(cli.database_url()) as conn:
        actions = {row[0] for row in conn.execute("SELECT DISTINCT action FROM audit.events").fetchall()}
    assert {"run.plan", "run.start", "stage.start", "stage.finish", "traffic.weights", "release.promote",
            "release.rollback", "run.resume", "lease.takeover"} <= actions  # fmt: skip
    verified = cli("audit", "verify", "--database-url", cli.database_url())
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_after_all_those_crashes_local_down_leaves_no_process_behind(cli: Cli) -> None:
    result = cli("local", "down")
    assert result.returncode == 0, result.stderr
    assert leftovers(cli.state_dir) == []
