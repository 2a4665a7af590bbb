import pytest

from sophia.db.connect import with_endpoint_option
from sophia.db.errors import MigrationRefused
from sophia.db.neon import direct_host, endpoint_of, sni_host, target_from_url
from sophia.db.redact import redact


def test_sni_host_carries_the_endpoint_id() -> None:
    assert sni_host("ep-rough-dew-af6w48m3", "us-east-1") == "ep-rough-dew-af6w48m3.us-east-1.aws.neon.tech"
    pooled = sni_host("ep-rough-dew-af6w48m3-pooler", "eu-central-1")
    assert pooled == "ep-rough-dew-af6w48m3.eu-central-1.aws.neon.tech"


@pytest.mark.parametrize(
    ("host", "direct", "endpoint"),
    [
        ("ep-a-1-pooler.us-east-2.aws.neon.tech", "ep-a-1.us-east-2.aws.neon.tech", "ep-a-1"),
        ("ep-a-1.us-east-2.aws.neon.tech", "ep-a-1.us-east-2.aws.neon.tech", "ep-a-1"),
        ("pg.neon.tech", "pg.neon.tech", None),
    ],
)
def test_direct_host_and_endpoint(host: str, direct: str, endpoint: str | None) -> None:
    assert direct_host(host) == direct
    assert endpoint_of(host) == endpoint


def test_neon_urls_use_the_direct_endpoint_and_tls() -> None:
    target = target_from_url("postgresql://u:secret@ep-x-1-pooler.us-east-1.aws.neon.tech/neondb")
    kw = target.kwargs
    assert kw["host"] == "ep-x-1.us-east-1.aws.neon.tech"
    assert kw["sslmode"] == "require"
    assert target.endpoint_id == "ep-x-1"
    assert "secret" not in target.describe()
    assert "secret" not in target.conninfo_without_password()


def test_a_configured_ca_upgrades_to_verify_full_but_never_downgrades() -> None:
    target = target_from_url("postgresql://u:p@ep-x-1.us-east-1.aws.neon.tech/db?sslmode=require", ssl_root_cert="/ca")
    assert target.kwargs["sslmode"] == "verify-full"
    assert target.kwargs["sslrootcert"] == "/ca"
    strict = target_from_url("postgresql://u:p@ep-x-1.us-east-1.aws.neon.tech/db?sslmode=verify-ca")
    assert strict.kwargs["sslmode"] == "verify-ca"


def test_non_neon_urls_are_left_alone() -> None:
    target = target_from_url("postgresql://u:p@127.0.0.1:5432/db")
    assert "sslmode" not in target.kwargs
    assert target.endpoint_id is None


def test_seed_style_host_without_endpoint_uses_the_configured_endpoint() -> None:
    target = target_from_url("postgresql://u:p@pg.neon.tech/db", endpoint_id="ep-rough-dew-af6w48m3")
    assert target.endpoint_id == "ep-rough-dew-af6w48m3"


def test_endpoint_option_keeps_existing_options() -> None:
    target = target_from_url("postgresql://u:p@ep-x-1.us-east-1.aws.neon.tech/db?options=-c%20search_path%3Dapp")
    assert with_endpoint_option(target).kwargs["options"] == "endpoint=ep-x-1 -c search_path=app"


def test_a_malformed_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(MigrationRefused) as caught:
        target_from_url("postgresql://u:hunter2@host/db?no_such_option=1")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "failed: postgresql://neondb_owner:hunter2@ep-x.aws.neon.tech/neondb",
        "conninfo host=x password=hunter2 dbname=y",
        "Authorization: Bearer hunter2",
        "the key hunter2 leaked",
    ],
)
def test_redact(text: str) -> None:
    assert "hunter2" not in redact(text, ["hunter2"])
    if "password=" in text or "://" in text or "Bearer" in text:
        assert "hunter2" not in redact(text)
