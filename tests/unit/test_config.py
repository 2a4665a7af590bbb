"""Configuration: the checked-in file, the deployment guide's variables, and errors that name the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sophia.config import STAGE_NAMES, ConfigError, Profile, check_version, load_config

SEED_SERVICES = [
    "mcp-research", "mcp-context", "mcp-agents", "mcp-business", "comms-mcp", "crm-mcp", "analytics-mcp",
    "sophia-dashboard", "sophia-business", "sophia-hubspot", "sophia-github", "sophia-lambda",
]  # fmt: skip


def test_the_checked_in_file_has_the_seed_services_and_production_numbers(repo_root: Path) -> None:
    settings = load_config(repo_root / "sophia.yaml", env={})
    assert settings.service_names == SEED_SERVICES
    production = settings.profiles["production"]
    assert production.canary.weight == 10
    assert (production.health.interval_s, production.health.timeout_s, production.health.failure_threshold) == (
        30, 10, 3,
    )  # fmt: skip
    assert production.synthetics.timeout_s == 15
    budgets = production.budgets
    assert [budgets.for_stage(s) for s in STAGE_NAMES] == [None, None, 300, 120, 60, 600, None]
    assert budgets.total == 1800
    assert production.longest_canary_analysis_s <= 300  # the analysis fits the canary-deploy budget
    assert settings.neon.project_id == "rough-union-72390895"
    assert settings.neon.endpoint_id == "ep-rough-dew-af6w48m3"


def test_the_deployment_guide_variables_override_the_file(repo_root: Path) -> None:
    env = {
        "CANARY_PERCENTAGE": "25", "PRODUCTION_TAG": "v2.0.0", "REGISTRY": "registry.example",
        "NEON_PROJECT_ID": "p-1", "NEON_ENDPOINT_ID": "ep-x-1", "NEON_USER": "u", "NEON_DB": "d",
        "NEON_API_KEY": "neon-secret", "SLACK_WEBHOOK_URL": "https://hooks.example/T/B/x",
        "PAGERDUTY_INTEGRATION_KEY": "pd-secret", "SOPHIA_PROFILE": "production",
    }  # fmt: skip
    settings = load_config(repo_root / "sophia.yaml", env=env)
    assert settings.profile == "production"
    assert settings.policy.canary.weight == 25
    assert settings.release.version == "v2.0.0"
    assert settings.release.registry == "registry.example"
    assert (settings.neon.project_id, settings.neon.endpoint_id, settings.neon.user, settings.neon.database) == (
        "p-1", "ep-x-1", "u", "d",
    )  # fmt: skip
    assert settings.neon.api_key is not None
    assert settings.neon.api_key.get_secret_value() == "neon-secret"
    assert "neon-secret" not in repr(settings)
    assert "pd-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "overrides", "words"),
    [
        ({"CANARY_PERCENTAGE": "150"}, {}, "CANARY_PERCENTAGE"),
        ({"CANARY_PERCENTAGE": "ten"}, {}, "CANARY_PERCENTAGE"),
        ({"PRODUCTION_TAG": "1.2"}, {}, "malformed version"),
        ({}, {"profiles": {"local": {"health": {"interval_s": -1}}}}, "profiles.local.health.interval_s"),
        ({}, {"profiles": {"local": {"canary": {"steps": [50, 10]}}}}, "strictly ascending"),
        ({}, {"profile": "staging"}, "profile 'staging' is not defined"),
        ({}, {"local": {"postgres_port": 18001}}, "ports used twice: 18001"),
        ({}, {"surprise": 1}, "surprise"),
        (
            {},
            {"profiles": {"production": {"budgets": {"canary-deploy": 200}}}},
            "profiles.production: Value error, the canary analysis can last 240s (1 canary.steps × "
            "analysis.step_duration_s 120s × analysis.max_step_extension 2), longer than budgets.canary-deploy 200s",
        ),
        ({}, {"profiles": {"local": {"canary": {"steps": [10, 25, 50, 75]}}}}, "can last 64s (4 canary.steps"),
    ],
)
def test_bad_values_name_the_field(
    repo_root: Path, env: dict[str, str], overrides: dict[str, object], words: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(repo_root / "sophia.yaml", env=env, overrides=overrides)


def test_unreadable_or_malformed_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("services: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy, env={})


@pytest.mark.parametrize("version", ["v1.0.0", "v10.2.33", "v1.2.3-rc.1"])
def test_good_versions(version: str) -> None:
    assert check_version(version) == version


@pytest.mark.parametrize("version", ["1.0.0", "v1.0", "v1.0.0.0", "latest", "v1.0.0-", ""])
def test_malformed_versions(version: str) -> None:
    with pytest.raises(ConfigError, match="malformed version"):
        check_version(version)


def test_the_load_generators_mix_is_configurable_per_kind(repo_root: Path) -> None:
    custom = {"comms": [{"method": "POST", "path": "/slack/post", "body": {"channel": "#x"}, "weight": 2}], "crm": []}
    settings = load_config(
        repo_root / "sophia.yaml", env={}, overrides={"profiles": {"local": {"traffic": {"mix": custom}}}}
    )
    mix = settings.profiles["local"].traffic.mix
    assert [(s.method, s.path, s.weight) for s in mix["comms"]] == [("POST", "/slack/post", 2)]
    assert [s.path for s in mix["crm"]] == ["/tasks/create", "/version"]  # an empty list keeps the default
    assert set(mix) == {"generic", "comms", "crm", "analytics"}
    with pytest.raises(ConfigError, match="path"):
        load_config(
            repo_root / "sophia.yaml",
            env={},
            overrides={"profiles": {"local": {"traffic": {"mix": {"crm": [{"path": "no-slash"}]}}}}},
        )


def test_the_default_profile_fits_its_own_budgets() -> None:
    profile = Profile()
    assert profile.budgets.canary_deploy is not None
    assert profile.longest_canary_analysis_s <= profile.budgets.canary_deploy
