"""``sophia undo``: ship the release before the current one back, through the pipeline's own gates.

An undo is a run like any other — under the environment's lease, in the run store, with a report — of a release
that was built and tested already: its artifact comes from the release history, so lint-test, build-cache,
migrate-neon and synthetics are left out (``UNDO_SKIPS``). What remains is the gated path: a canary of the previous
version judged like any canary, then 100 %, then readiness; a failing gate rolls back to the current release. It
uses nothing but the Platform protocol, so it works on every platform.

The schema stays as it is: what migrate-neon applies is backward compatible by construction (expand steps). A
contract step is not, so once one has run since the target was promoted, the undo is refused (exit 2), naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sophia.engine.ports import Migrator
from sophia.engine.record import RunRecord
from sophia.engine.store import Release, Store

UNDO_SKIPS = ("lint-test", "build-cache", "migrate-neon", "synthetics")


class UndoRefusedError(ValueError):
    """The undo cannot be made; nothing was changed."""


@dataclass(frozen=True)
class UndoPlan:
    current: Release  # what is live now
    target: Release  # what goes back


def undo_target(history: Sequence[Release], to: str | None = None) -> UndoPlan:
    """Which release an undo ships back: ``to``'s newest promotion, or the newest release of another version than
    the current one. ``history`` is newest first, one platform's."""
    if not history:
        raise UndoRefusedError("no promoted release in the run store: nothing to undo")
    current = history[0]
    earlier = [r for r in history[1:] if r.version != current.version]
    if to is not None:
        if to == current.version:
            raise UndoRefusedError(f"{to} is the current release already")
        earlier = [r for r in earlier if r.version == to]
        if not earlier:
            known = ", ".join(dict.fromkeys(r.version for r in history[1:])) or "none"
            raise UndoRefusedError(f"{to} was never promoted here (earlier releases: {known})")
    if not earlier:
        raise UndoRefusedError(f"{current.version} is the only release promoted here: there is nothing before it")
    target = earlier[0]
    if target.artifact is None:
        raise UndoRefusedError(f"the release of {target.version} (run {target.run_id}) kept no artifact to ship back")
    return UndoPlan(current, target)


def contract_blocker(target: Release, contracts: Sequence[tuple[str, datetime]]) -> str | None:
    """Why the target's code cannot run on today's schema: a contract step applied after it was promoted."""
    since = [name for name, applied_at in contracts if applied_at > target.promoted_at]
    if not since:
        return None
    return (
        f"cannot undo to {target.version}: contract migration {since[0]} ran after it was promoted "
        f"({target.promoted_at.isoformat()}), so its code no longer fits the schema"
    )


async def prepare_undo(store: Store, migrator: Migrator, platform: str, to: str | None = None) -> UndoPlan:
    """Pick the release to ship back from the history and check that the schema still fits it."""
    history = [r for r in await store.releases(200) if r.platform == platform]
    plan = undo_target(history, to)
    blocker = contract_blocker(plan.target, await migrator.contracts_applied())
    if blocker is not None:
        raise UndoRefusedError(blocker)
    return plan


def as_undo(record: RunRecord, plan: UndoPlan) -> RunRecord:
    """Make a new run record the undo of ``plan``: the target's version and artifact, only the gated stages."""
    record.version = plan.target.version
    record.artifact = dict(plan.target.artifact or {})
    record.skip = list(UNDO_SKIPS)
    record.undo_of = plan.current.version
    return record
