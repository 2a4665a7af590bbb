"""The GitHub workflow's release jobs are the engine's stages: one job per stage, in the engine's order, each
`sophia stage NAME --run "$RUN"` with the run id from lint-test's output; a rollback job after any failure or
cancellation; least-privilege permissions; actions pinned by commit; and actionlint and zizmor find nothing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sophia.config import STAGE_NAMES
from tests.fakes.cluster import required

WORKFLOW = Path(".github/workflows/sophia_infra.yml")
RUN_FROM_LINT = "${{ needs.lint-test.outputs.run }}"
GUIDE_SECRETS = ("GITHUB_TOKEN", "KUBE_CONFIG", "NEON_API_KEY", "SLACK_WEBHOOK_URL", "PAGERDUTY_INTEGRATION_KEY")
GUIDE_ENV = {
    "CANARY_PERCENTAGE": 10,
    "REGISTRY": "ghcr.io",
    "NEON_PROJECT_ID": "rough-union-72390895",
    "NEON_ENDPOINT_ID": "ep-rough-dew-af6w48m3",
    "NEON_USER": "neondb_owner",
    "NEON_DB": "neondb",
}


@pytest.fixture
def workflow(repo_root: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((repo_root / WORKFLOW).read_text())
    assert isinstance(loaded, dict)
    return loaded


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_one_job_per_stage_in_the_engines_order(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    assert set(STAGE_NAMES) <= set(jobs)
    for previous, name in zip(("test", *STAGE_NAMES), STAGE_NAMES, strict=False):
        job = jobs[name]
        assert previous in _needs(job), f"{name} must wait for {previous}"
        assert f'.venv/bin/sophia stage {name} --run "$RUN"' in _runs(job)
        if name != "lint-test":
            assert "lint-test" in _needs(job)  # where the run id comes from
            assert job["env"]["RUN"] == RUN_FROM_LINT


def test_lint_test_plans_the_run_and_hands_its_id_on(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["lint-test"]
    assert job["outputs"]["run"] == "${{ steps.plan.outputs.run }}"
    plan = next(step for step in job["steps"] if step.get("id") == "plan")
    assert plan["run"] == 'echo "run=$(.venv/bin/sophia plan)" >> "$GITHUB_OUTPUT"'
    stage = next(step for step in job["steps"] if "sophia stage lint-test" in step.get("run", ""))
    assert stage["env"]["RUN"] == "${{ steps.plan.outputs.run }}"
    assert job["if"] == "github.event_name != 'pull_request'"


def test_rollback_runs_after_any_release_job_fails_or_is_cancelled(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["rollback"]
    assert _needs(job) == list(STAGE_NAMES)
    condition = " ".join(job["if"].split())
    assert condition.startswith("always()")
    assert "contains(needs.*.result, 'failure')" in condition
    assert "contains(needs.*.result, 'cancelled')" in condition
    assert job["env"]["RUN"] == RUN_FROM_LINT
    assert any(run.startswith('.venv/bin/sophia rollback --run "$RUN"') for run in _runs(job))


def test_the_run_store_is_shared_through_a_secret(workflow: dict[str, Any]) -> None:
    for name in (*STAGE_NAMES, "rollback"):
        env = workflow["jobs"][name]["env"]
        assert env["SOPHIA_STATE_URL"] == "${{ secrets.SOPHIA_STATE_URL }}"
        for secret in GUIDE_SECRETS:
            assert env[secret] == f"${{{{ secrets.{secret} }}}}"
    assert {k: workflow["env"][k] for k in GUIDE_ENV} == GUIDE_ENV
    assert "PRODUCTION_TAG" in workflow["env"]


def test_permissions_are_least_privilege(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        expected = {"contents": "read", "packages": "write"} if name == "build-cache" else {"contents": "read"}
        assert job["permissions"] == expected, name


def test_manual_gate_and_one_release_per_environment(workflow: dict[str, Any]) -> None:
    assert workflow["jobs"]["full-rollout"]["environment"] == "production"
    assert "production" in workflow["concurrency"]["group"]
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_actions_are_pinned_by_commit_and_untrusted_values_stay_out_of_scripts(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), (name, step["uses"])
            if "run" in step:
                assert "${{" not in step["run"], (name, step["run"])  # values reach scripts through env
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_the_test_and_rehearsal_jobs_stay(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    assert any("make test" in run for run in _runs(jobs["test"]))
    loop = next(run for run in _runs(jobs["rehearsal"]) if "for stage in" in run)
    assert loop.split("for stage in", 1)[1].split(";", 1)[0].split() == list(STAGE_NAMES)
    assert _needs(jobs["rehearsal"]) == ["test"]
    # The suite runs with each test's own settings: no platform or builder from the workflow's environment.
    assert not {"SOPHIA_PLATFORM", "SOPHIA_BUILDER"} & set(workflow["env"]) & set(jobs["test"].get("env", {}))
    assert "SOPHIA_PLATFORM" not in workflow["env"]


def _tool(name: str) -> str | None:
    cached = Path.home() / ".cache" / "sophia" / "bin" / name
    beside = Path(sys.executable).parent / name
    for candidate in (beside, cached):
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


@pytest.mark.parametrize(
    ("tool", "args", "how"),
    [
        ("actionlint", [], "ci/install-actionlint.sh"),
        ("zizmor", ["--offline", "--no-progress"], "the dev extras"),
    ],
)
def test_linters_find_nothing(repo_root: Path, tool: str, args: list[str], how: str) -> None:
    exe = _tool(tool)
    if exe is None:
        if required():
            pytest.fail(f"CI=true: {tool} is not installed ({how})")
        pytest.skip(f"{tool} is not installed ({how})")
    proc = subprocess.run([exe, *args, str(WORKFLOW)], cwd=repo_root, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
