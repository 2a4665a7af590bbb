"""The configuration at scale: sophia.yaml plus synthetic services, valid for the engine as it is."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from sophia.config import Settings, load_config
from sophia.platforms.local.scaled import scaled, synthetic_name, write_scaled


def load_config_from(raw: dict) -> Settings:
    return Settings.model_validate(raw)


@pytest.fixture
def raw(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "sophia.yaml").read_text())


def test_synthetic_generic_services_are_added_up_to_the_count(raw: dict) -> None:
    out = scaled(raw, 200)
    names = [s["name"] for s in out["services"]]
    assert len(names) == len(set(names)) == 200
    assert names[:12] == [s["name"] for s in raw["services"]]
    assert names[12:14] == ["synthetic-013", "synthetic-014"]
    assert names[-1] == synthetic_name(200) == "synthetic-200"
    assert {s["kind"] for s in out["services"][12:]} == {"generic"}
    settings = load_config_from(out)
    ports = [*settings.router_ports.values(), settings.local.postgres_port, settings.local.router_admin_port]
    assert len(ports) == len(set(ports)) == 202
    assert len(raw["services"]) == 12  # the input is left as it was


def test_it_can_re_port_everything_and_spread_one_total_rate(raw: dict) -> None:
    counter = itertools.count(21000)
    out = scaled(raw, 50, ports=lambda: next(counter), total_rps=400)
    assert list(out["local"]["router_ports"].values()) == list(range(21000, 21050))
    assert (out["local"]["postgres_port"], out["local"]["router_admin_port"]) == (21050, 21051)
    assert {p["traffic"]["rps_per_service"] for p in out["profiles"].values()} == {8.0}


@pytest.mark.parametrize(("services", "total", "rate"), [(200, 400, 2.0), (200, 1, 0.1), (12, 240, 20.0)])
def test_the_spread_rate(raw: dict, services: int, total: float, rate: float) -> None:
    out = scaled(raw, services, total_rps=total)
    assert out["profiles"]["local"]["traffic"]["rps_per_service"] == rate


def test_fewer_services_than_the_file_has_is_refused(raw: dict) -> None:
    with pytest.raises(ValueError, match="already has 12 services"):
        scaled(raw, 5)


def test_the_written_file_loads_as_settings_and_keeps_the_checkout(repo_root: Path, tmp_path: Path) -> None:
    path = write_scaled(repo_root / "sophia.yaml", tmp_path / "sophia-200.yaml", 200, total_rps=400)
    settings = load_config(path, env={})
    assert len(settings.services) == 200
    assert settings.source_dir == repo_root.resolve()
    assert settings.migrations_dir == (repo_root / "ops/sql").resolve()
    assert settings.state_dir == tmp_path.resolve() / ".sophia-scaled"
    assert settings.policy.traffic.rps_per_service == 2.0
