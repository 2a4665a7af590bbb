"""Nothing is left split: an unexpected exception inside any stage fails that stage and rolls every service back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from sophia.config import STAGE_NAMES
from sophia.engine import run
from sophia.engine.record import Outcome, StageStatus
from tests.fakes.engine_world import World, versions, world

pytestmark = pytest.mark.looptime  # the engine on the event loop's virtual time: no real sleeps

SECRET_URL = "postgresql://neondb_owner:hunter2-secret@ep-x.aws.neon.tech/neondb"

# (stage, the port its own code calls, the method, the exception it raises there)
INJECTIONS: list[tuple[str, str, str, Exception]] = [
    ("lint-test", "commands", "run", FileNotFoundError("ruff: not found")),
    ("build-cache", "builder", "build", OSError(f"cannot reach {SECRET_URL}")),
    ("canary-deploy", "platform", "deploy_canary", KeyError("mcp-research")),
    ("migrate-neon", "migrator", "migrate", ConnectionResetError(f"lost {SECRET_URL}")),
    ("synthetics", "synthetics", "run", ZeroDivisionError("division by zero")),
    ("full-rollout", "platform", "promote", AttributeError("'NoneType' object has no attribute 'weight'")),
    ("readiness-check", "platform", "validate", ValueError("password=hunter2-secret rejected")),
]


def arm(w: World, port: str, method: str, exc: Exception) -> None:
    target: Any = getattr(w.ctx.ports, port)

    async def explode(*args: object, **kwargs: object) -> Any:
        raise exc

    setattr(target, method, explode)


def test_the_table_covers_every_stage() -> None:
    assert [row[0] for row in INJECTIONS] == list(STAGE_NAMES)


@pytest.mark.parametrize("case", INJECTIONS, ids=[row[0] for row in INJECTIONS])
async def test_an_exception_in_any_stage_rolls_back_and_leaves_nothing_split(
    repo_root: Path, tmp_path: Path, case: tuple[str, str, str, Exception]
) -> None:
    stage, port, method, exc = case
    w = await world(repo_root, tmp_path)
    arm(w, port, method, exc)
    outcome = await run.execute(w.ctx)
    assert outcome is Outcome.ROLLED_BACK
    assert w.record.outcome is Outcome.ROLLED_BACK
    failed = w.record.stage(stage)
    assert failed.status is StageStatus.FAILED
    assert f"unexpected {type(exc).__name__}" in failed.detail
    assert "hunter2" not in failed.detail
    later = STAGE_NAMES[STAGE_NAMES.index(stage) + 1 :]
    assert all(w.stage(name) is StageStatus.PENDING for name in later)
    assert versions(w.platform) == {("v1.0.0", None, 0)}  # every service on its stable, no canary, no split
    rollback = w.record.rollback
    assert rollback is not None
    assert rollback.completed_at is not None
    assert type(exc).__name__ in rollback.reason
    assert "hunter2" not in rollback.reason


async def test_a_secret_from_the_settings_is_redacted_from_the_stage_detail(repo_root: Path, tmp_path: Path) -> None:
    w = await world(repo_root, tmp_path)
    w.ctx.settings = w.ctx.settings.model_copy(update={"github_token": SecretStr("ghp_plainsecret1234")})
    arm(w, "builder", "build", RuntimeError("push refused for token ghp_plainsecret1234"))
    assert await run.execute(w.ctx) is Outcome.ROLLED_BACK
    detail = w.record.stage("build-cache").detail
    assert detail == "unexpected RuntimeError: push refused for token ***"
