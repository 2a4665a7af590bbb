"""The HTTP health probe against a real server: healthy, unhealthy, slow and unreachable."""

from __future__ import annotations

import pytest

from sophia.checks.probe import HttpProbe
from tests.conftest import free_port
from tests.fakes.receivers import Reply, http_receiver


@pytest.mark.parametrize(
    ("reply", "ok", "status", "error"),
    [
        (Reply(200), True, 200, None),
        (Reply(204), True, 204, None),
        (Reply(503), False, 503, "HTTP 503"),
        (Reply(delay_s=2.0), False, None, "no answer within 0.2s"),
    ],
)
async def test_probe_results(reply: Reply, ok: bool, status: int | None, error: str | None) -> None:
    probe = HttpProbe()
    with http_receiver(reply) as receiver:
        result = await probe.probe(receiver.url("/health"), 0.2)
        assert [r.path for r in receiver.requests] == ["/health"]
    await probe.aclose()
    assert (result.ok, result.status_code, result.error) == (ok, status, error)


async def test_an_unreachable_target_is_unhealthy() -> None:
    probe = HttpProbe()
    result = await probe.probe(f"http://127.0.0.1:{free_port()}/health", 1.0)
    await probe.aclose()
    assert not result.ok
    assert result.error is not None
    assert "unreachable" in result.error
