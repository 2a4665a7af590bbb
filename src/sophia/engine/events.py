"""Typed events emitted by the run loop; sinks render them live, record them durably, or build the report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    RUN_STARTED = "run_started"
    STAGE_STARTED = "stage_started"
    STAGE_FINISHED = "stage_finished"
    WEIGHTS_CHANGED = "weights_changed"
    OBSERVATION = "observation"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_FINISHED = "rollback_finished"
    RUN_FINISHED = "run_finished"
    NOTE = "note"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    at: datetime
    run_id: str
    message: str
    stage: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "at": self.at.isoformat(),
            "run_id": self.run_id,
            "stage": self.stage,
            "message": self.message,
            "data": dict(self.data),
        }


EventSink = Callable[[Event], None]


class EventBus:
    """Fans every event out to the registered sinks, in order; a failing sink never breaks the run."""

    def __init__(self, *sinks: EventSink) -> None:
        self._sinks: list[EventSink] = list(sinks)
        self.sink_errors: list[str] = []

    def emit(self, event: Event) -> None:
        for sink in self._sinks:
            try:
                sink(event)
            except Exception as exc:
                self.sink_errors.append(f"{type(exc).__name__}: {exc}")
