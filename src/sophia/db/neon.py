"""Where to connect: a libpq target built from a URL, with Neon's rules applied.

Neon routes a connection to a compute by the endpoint id in the TLS SNI host name
(``ep-<name>.<region>.aws.neon.tech``). Migrations use the direct endpoint, never the ``-pooler`` one: PgBouncer in
transaction mode breaks SET, advisory locks and startup options. TLS is required (``verify-full`` when a CA is
configured). Old clients that send no SNI get ``options=endpoint=<id>`` instead — added only after the server asked
for it, since Neon refuses a connection whose SNI and option disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sophia.db.errors import MigrationRefused
from sophia.db.tls import tls_problem

NEON_DOMAIN = ".neon.tech"
POOLER_SUFFIX = "-pooler"
_WEAK_SSLMODES = {None, "disable", "allow", "prefer", "require"}


def is_neon_host(host: str | None) -> bool:
    return bool(host) and str(host).lower().endswith(NEON_DOMAIN)


def sni_host(endpoint_id: str, region: str) -> str:
    """The host name that carries the endpoint id in SNI, e.g. ``ep-rough-dew-af6w48m3.us-east-1.aws.neon.tech``."""
    return f"{direct_endpoint(endpoint_id)}.{region}.aws{NEON_DOMAIN}"


def direct_endpoint(label: str) -> str:
    return label.removesuffix(POOLER_SUFFIX)


def direct_host(host: str) -> str:
    """``ep-x-pooler.region.aws.neon.tech`` → ``ep-x.region.aws.neon.tech``."""
    first, dot, rest = host.partition(".")
    return direct_endpoint(first) + dot + rest


def endpoint_of(host: str | None) -> str | None:
    if not host:
        return None
    first = direct_endpoint(host.partition(".")[0])
    return first if first.startswith("ep-") else None


@dataclass(frozen=True)
class DbTarget:
    """libpq keywords for one database. Holds the password: never print ``params``; use ``describe()``."""

    params: tuple[tuple[str, str], ...]
    endpoint_id: str | None = None  # for the no-SNI fallback; None when the host is not Neon

    @property
    def kwargs(self) -> dict[str, str]:
        return dict(self.params)

    @property
    def password(self) -> str | None:
        return self.kwargs.get("password")

    def conninfo(self) -> str:
        return make_conninfo(**self.kwargs)

    def conninfo_without_password(self) -> str:
        return make_conninfo(**{k: v for k, v in self.params if k != "password"})

    def describe(self) -> str:
        kw = self.kwargs
        where = kw.get("host") or kw.get("hostaddr") or "local socket"
        port = f":{kw['port']}" if kw.get("port") else ""
        return f"{kw.get('user', '?')}@{where}{port}/{kw.get('dbname', '?')}"

    @property
    def database(self) -> str | None:
        return self.kwargs.get("dbname")

    def with_params(self, **changes: str) -> DbTarget:
        kw = self.kwargs
        kw.update(changes)
        return DbTarget(tuple(kw.items()), self.endpoint_id)


def target_from_url(url: str, *, endpoint_id: str | None = None, ssl_root_cert: str | None = None) -> DbTarget:
    """Parse a libpq URL or keyword string; for Neon hosts force the direct endpoint and TLS."""
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except Exception:  # psycopg raises several types, and their text could echo the password
        raise MigrationRefused("the database URL is not a valid PostgreSQL connection string") from None
    host = params.get("host")
    neon = is_neon_host(host)
    if neon and host:
        params["host"] = direct_host(host)
        endpoint_id = endpoint_of(host) or endpoint_id
    if ssl_root_cert:
        params["sslrootcert"] = ssl_root_cert
    if (neon or ssl_root_cert) and params.get("sslmode") in _WEAK_SSLMODES:
        params["sslmode"] = "verify-full" if params.get("sslrootcert") else "require"
    target = DbTarget(tuple(params.items()), endpoint_id if neon else None)
    problem = tls_problem(target.conninfo())
    if problem:
        raise MigrationRefused(f"the database URL: {problem}")
    return target
