"""The shape every stage shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sophia.engine.context import RunContext
from sophia.engine.record import StageStatus


@dataclass(frozen=True)
class StageResult:
    status: StageStatus
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    detected_at: datetime | None = None


def passed(detail: str, **data: Any) -> StageResult:
    return StageResult(StageStatus.PASSED, detail, data)


def failed(detail: str, *, detected_at: datetime | None = None, **data: Any) -> StageResult:
    return StageResult(StageStatus.FAILED, detail, data, detected_at)


class Stage(Protocol):
    name: str

    async def run(self, ctx: RunContext) -> StageResult: ...
