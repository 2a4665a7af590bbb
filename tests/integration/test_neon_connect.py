"""The Neon connection path, for real: TLS, SNI, the endpoint-option fallback and cold computes, through a local
Neon-style proxy in front of the embedded Postgres."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from sophia.db.connect import ConnectPolicy, connect
from sophia.db.errors import ConnectError
from sophia.db.neon import target_from_url
from sophia.engine.clock import FakeClock
from sophia.platforms.local.postgres import EmbeddedPostgres
from tests.fakes.neon_proxy import COLD, MISSING_ENDPOINT, NeonProxy

ENDPOINT = "ep-rough-dew-af6w48m3"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("neon-tls")
    ca = trustme.CA()
    ca.issue_cert("*.us-east-1.aws.neon.tech").private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "other-ca.pem"))
    return {"server": folder / "server.pem", "ca": folder / "ca.pem", "other": folder / "other-ca.pem"}


@pytest.fixture
def proxy(pg_server: EmbeddedPostgres, certs: dict[str, Path]) -> Iterator[NeonProxy]:
    with NeonProxy(upstream_port=pg_server.port, cert_file=certs["server"], key_file=certs["server"]) as running:
        yield running


def neon_url(pg_server: EmbeddedPostgres, proxy: NeonProxy, *, endpoint: str = ENDPOINT, extra: str = "") -> str:
    host = proxy.host_for(endpoint)
    return f"postgresql://postgres:{pg_server.password()}@{host}:{proxy.port}/postgres?hostaddr=127.0.0.1{extra}"


async def select_one(url: str, clock: FakeClock | None = None, **kwargs: str) -> int:
    conn = await connect(target_from_url(url, **kwargs), clock or FakeClock())
    try:
        row = await (await conn.execute("SELECT 1")).fetchone()
        assert row is not None
        return int(row[0])
    finally:
        await conn.close()


async def test_a_modern_client_is_routed_by_sni_and_never_sends_the_option(
    pg_server: EmbeddedPostgres, proxy: NeonProxy
) -> None:
    assert await select_one(neon_url(pg_server, proxy)) == 1
    assert len(proxy.log) == 1
    assert proxy.log[0].sni == f"{ENDPOINT}.us-east-1.aws.neon.tech"
    assert proxy.log[0].option_endpoint is None  # SNI and option together risk "Inconsistent project name"
    assert proxy.log[0].outcome == "routed"


async def test_an_old_client_without_sni_falls_back_to_the_endpoint_option(
    pg_server: EmbeddedPostgres, proxy: NeonProxy
) -> None:
    assert await select_one(neon_url(pg_server, proxy, extra="&sslsni=0")) == 1
    first, second = proxy.log
    assert first.sni is None
    assert first.outcome == MISSING_ENDPOINT
    assert second.sni is None
    assert second.option_endpoint == ENDPOINT
    assert second.outcome == "routed"


async def test_the_pooler_host_is_replaced_by_the_direct_endpoint(
    pg_server: EmbeddedPostgres, proxy: NeonProxy
) -> None:
    assert await select_one(neon_url(pg_server, proxy, endpoint=f"{ENDPOINT}-pooler")) == 1
    assert proxy.log[0].endpoint == ENDPOINT


async def test_a_cold_compute_is_retried_with_backoff_on_the_clock(
    pg_server: EmbeddedPostgres, proxy: NeonProxy
) -> None:
    proxy.cold_starts = 3
    clock = FakeClock()
    assert await select_one(neon_url(pg_server, proxy), clock) == 1
    assert [s.outcome for s in proxy.log] == [COLD, COLD, COLD, "routed"]
    assert clock.monotonic() == pytest.approx(0.5 + 1.0 + 2.0)


async def test_a_compute_that_never_wakes_fails_clearly(pg_server: EmbeddedPostgres, proxy: NeonProxy) -> None:
    proxy.cold_starts = 100
    target = target_from_url(neon_url(pg_server, proxy))
    with pytest.raises(ConnectError, match=r"after 3 attempts.*Couldn't connect to compute node") as caught:
        await connect(target, FakeClock(), ConnectPolicy(attempts=3))
    assert pg_server.password() not in str(caught.value)


async def test_verify_full_when_a_ca_is_configured(
    pg_server: EmbeddedPostgres, proxy: NeonProxy, certs: dict[str, Path]
) -> None:
    target = target_from_url(neon_url(pg_server, proxy), ssl_root_cert=str(certs["ca"]))
    assert target.kwargs["sslmode"] == "verify-full"
    assert await select_one(neon_url(pg_server, proxy), ssl_root_cert=str(certs["ca"])) == 1
    with pytest.raises(ConnectError, match="certificate verify failed"):
        await select_one(neon_url(pg_server, proxy), ssl_root_cert=str(certs["other"]))


async def test_plain_text_is_refused(pg_server: EmbeddedPostgres, proxy: NeonProxy) -> None:
    plain = target_from_url(neon_url(pg_server, proxy)).with_params(sslmode="disable")
    with pytest.raises(ConnectError, match="connection is insecure"):
        await connect(plain, FakeClock())
