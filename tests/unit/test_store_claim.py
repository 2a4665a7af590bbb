"""Who may take an environment: the decision both stores share, as a table of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sophia.engine.record import Phase
from sophia.engine.store import ClaimState
from sophia.store.claim import Claim, Verdict, judge, state_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIVE, EXPIRED = NOW + timedelta(seconds=5), NOW - timedelta(seconds=1)


def claim(run: str | None, holder: str | None, expires: datetime | None, phase: Phase | None) -> Claim:
    return Claim("production", run, holder, 7, NOW - timedelta(minutes=1), expires, phase)


CASES = [
    # (claim, asking run, holder connected, state, verdict)
    ("never used", None, "r2", None, None, Verdict.FREE),
    ("no run named", claim(None, None, None, None), "r2", None, None, Verdict.FREE),
    ("live holder", claim("r1", "a", LIVE, Phase.RUNNING), "r2", None, ClaimState.RUNNING, Verdict.HELD),
    ("live holder, same run", claim("r1", "a", LIVE, Phase.RUNNING), "r1", None, ClaimState.RUNNING, Verdict.HELD),
    ("live and connected", claim("r1", "a", LIVE, Phase.RUNNING), "r2", True, ClaimState.RUNNING, Verdict.HELD),
    ("live run finished", claim("r1", "a", LIVE, Phase.PROMOTED), "r2", None, ClaimState.RUNNING, Verdict.HELD),
    (
        "expired, run unfinished",
        claim("r1", "a", EXPIRED, Phase.RUNNING),
        "r2",
        None,
        ClaimState.ORPHANED,
        Verdict.HELD,
    ),
    ("expired, resume", claim("r1", "a", EXPIRED, Phase.RUNNING), "r1", None, ClaimState.ORPHANED, Verdict.TAKE_OVER),
    ("expired, run finished", claim("r1", "a", EXPIRED, Phase.ROLLED_BACK), "r2", None, None, Verdict.TAKE_OVER),
    ("expired, run unknown", claim("r1", "a", EXPIRED, None), "r2", None, None, Verdict.TAKE_OVER),
    ("session gone, unfinished", claim("r1", "a", LIVE, Phase.RUNNING), "r2", False, ClaimState.ORPHANED, Verdict.HELD),
    (
        "session gone, resume",
        claim("r1", "a", LIVE, Phase.RUNNING),
        "r1",
        False,
        ClaimState.ORPHANED,
        Verdict.TAKE_OVER,
    ),
    ("session gone, finished", claim("r1", "a", LIVE, Phase.ABORTED), "r2", False, None, Verdict.TAKE_OVER),
    ("released, finished", claim("r1", None, NOW, Phase.PROMOTED), "r2", None, None, Verdict.FREE),
    ("released, unfinished", claim("r1", None, NOW, Phase.RUNNING), "r2", None, ClaimState.PAUSED, Verdict.HELD),
    ("released, next stage", claim("r1", None, NOW, Phase.RUNNING), "r1", None, ClaimState.PAUSED, Verdict.FREE),
    ("released, planned run", claim("r1", None, NOW, Phase.PLANNED), "r2", None, ClaimState.PAUSED, Verdict.HELD),
    ("expiry is exclusive", claim("r1", "a", NOW, Phase.RUNNING), "r1", None, ClaimState.ORPHANED, Verdict.TAKE_OVER),
]


@pytest.mark.parametrize(
    ("current", "run_id", "connected", "state", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_judge(
    current: Claim | None, run_id: str, connected: bool | None, state: ClaimState | None, verdict: Verdict
) -> None:
    assert state_of(current, NOW, connected) is state
    assert judge(current, run_id, NOW, connected) is verdict
