"""A fake Neon API v2 on 127.0.0.1 whose branches are real databases on the embedded Postgres.

What it serves (the subset ``sophia.db.neon_api`` uses), with Bearer-key authentication:

- ``GET  /projects/{id}/connection_uri`` — a URI for the branch's endpoint, with the password of a real login role
  (``neondb_owner``, created with CREATEROLE and owning every branch database, like on Neon);
- ``GET|POST /projects/{id}/branches``, ``GET|DELETE /projects/{id}/branches/{branch}``;
- ``POST /projects/{id}/branches/{branch}/restore`` (with ``preserve_under_name``);
- ``GET  /projects/{id}/operations/{op}`` — operations report ``running`` once, then ``finished``.

A branch is a database copied from its parent with ``pg_dump | pg_restore``, which leaves the parent's sessions
alone, as Neon's copy-on-write branches do (the services keep serving from the default branch meanwhile). A restore
ends the sessions of the branch it rewrites, as Neon's compute restart does.

With a :class:`NeonProxy`, URIs point at the proxy with the endpoint host (SNI) and ``hostaddr=127.0.0.1``, and the
proxy routes each endpoint to its branch's database, so every branch is reached as ``neondb`` — as on Neon.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import psycopg
import trustme
from psycopg import sql

from sophia.db.backup import pg_tool
from tests.fakes.neon_proxy import NeonProxy

ROLE = "neondb_owner"


@dataclass
class FakeBranch:
    id: str
    name: str
    database: str  # the real database on the embedded server
    endpoint_id: str
    parent_id: str | None = None
    default: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "parent_id": self.parent_id,
            "default": self.default,
            "primary": self.default,
            "current_state": "ready",
        }


@dataclass
class FakeNeonApi:
    admin_dsn: str  # superuser DSN of the embedded server (database "postgres")
    pg_port: int
    project_id: str = "rough-union-72390895"
    main_endpoint: str = "ep-rough-dew-af6w48m3"
    database: str = "neondb"
    api_key: str = field(default_factory=lambda: "napi_" + secrets.token_hex(16))
    proxy: NeonProxy | None = None
    force_pooler: bool = False  # hand out -pooler hosts even when asked for direct ones
    branches: dict[str, FakeBranch] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.password = "fake-neon-" + secrets.token_hex(12)
        self._prefix = f"neon_{uuid.uuid4().hex[:8]}"
        self._operations: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> FakeNeonApi:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                "DO $$ BEGIN CREATE ROLE neondb_owner LOGIN CREATEROLE; "
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )
            conn.execute(sql.SQL("ALTER ROLE neondb_owner PASSWORD {}").format(sql.Literal(self.password)))
        main = self._new_branch("main", parent=None)
        main.default = True
        main.endpoint_id = self.main_endpoint
        self._route(main)
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="fake-neon-api", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for branch in list(self.branches.values()):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(branch.database)))

    def __enter__(self) -> FakeNeonApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what tests look at --------------------------------------------------------------------------------------------

    @property
    def main(self) -> FakeBranch:
        return next(b for b in self.branches.values() if b.default)

    def branch_named(self, name: str) -> FakeBranch:
        return next(b for b in self.branches.values() if b.name == name)

    def dsn(self, branch: FakeBranch) -> str:
        """A direct superuser DSN to a branch's database, for assertions."""
        return self.admin_dsn.rsplit("/", 1)[0] + f"/{branch.database}"

    # -- branch mechanics ---------------------------------------------------------------------------------------------

    def _new_branch(self, name: str, parent: FakeBranch | None) -> FakeBranch:
        suffix = secrets.token_hex(4)
        branch = FakeBranch(
            id=f"br-{suffix}",
            name=name,
            database=f"{self._prefix}_{suffix}",
            endpoint_id=f"ep-fake-{suffix}",
            parent_id=parent.id if parent else None,
        )
        self._copy(parent.database if parent else None, branch.database)
        self.branches[branch.id] = branch
        return branch

    def _copy(self, source: str | None, target: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER neondb_owner").format(sql.Identifier(target)))
        if source is None:
            return
        base = self.admin_dsn.rsplit("/", 1)[0]
        dump = subprocess.run(
            [pg_tool("pg_dump"), "--format=custom", f"--dbname={base}/{source}"], capture_output=True, check=True
        )
        subprocess.run(
            [pg_tool("pg_restore"), "--exit-on-error", f"--dbname={base}/{target}"],
            input=dump.stdout, capture_output=True, check=True,
        )  # fmt: skip

    def _route(self, branch: FakeBranch) -> None:
        if self.proxy is not None:
            self.proxy.routes[branch.endpoint_id] = branch.database

    def _operation(self, action: str, branch: FakeBranch) -> dict[str, Any]:
        op_id = str(uuid.uuid4())
        self._operations[op_id] = 1  # polls left before it finishes
        return {"id": op_id, "action": action, "branch_id": branch.id, "status": "running"}

    def uri(self, branch: FakeBranch, *, pooled: bool) -> str:
        password = quote(self.password, safe="")
        if self.proxy is None:
            return f"postgresql://{ROLE}:{password}@127.0.0.1:{self.pg_port}/{branch.database}"
        host = self.proxy.host_for(branch.endpoint_id + ("-pooler" if pooled or self.force_pooler else ""))
        return (
            f"postgresql://{ROLE}:{password}@{host}:{self.proxy.port}/{self.database}"
            "?sslmode=require&hostaddr=127.0.0.1"
        )

    # -- request handling (called from the HTTP thread) ---------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.calls.append((method, path))
            prefix = f"/projects/{self.project_id}"
            if not path.startswith(prefix):
                return 404, {"message": "project not found"}
            rest = path[len(prefix) :]
            return self._dispatch(method, rest, query, body)

    def _dispatch(  # noqa: PLR0911 - one return per route reads best in a fake
        self, method: str, rest: str, query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        if method == "GET" and rest == "/connection_uri":
            return self._connection_uri(query)
        if rest == "/branches":
            if method == "GET":
                return 200, {"branches": [b.as_json() for b in self.branches.values()]}
            if method == "POST":
                return self._create(body or {})
        if match := re.fullmatch(r"/operations/([\w-]+)", rest):
            left = self._operations.get(match[1])
            if left is None:
                return 404, {"message": "operation not found"}
            self._operations[match[1]] = left - 1
            return 200, {"operation": {"id": match[1], "status": "running" if left > 0 else "finished"}}
        if match := re.fullmatch(r"/branches/([\w-]+)(/restore)?", rest):
            branch = self.branches.get(match[1])
            if branch is None:
                return 404, {"message": f"branch {match[1]} not found"}
            if match[2] and method == "POST":
                return self._restore(branch, body or {})
            if method == "GET":
                return 200, {"branch": branch.as_json()}
            if method == "DELETE":
                return self._delete(branch)
        return 405, {"message": f"{method} {rest} is not supported by the fake"}

    def _connection_uri(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if query.get("database_name") != self.database or query.get("role_name") != ROLE:
            return 404, {"message": "database or role not found"}
        branch = self.branches.get(query.get("branch_id", "")) if query.get("branch_id") else self.main
        if branch is None:
            return 404, {"message": "branch not found"}
        return 200, {"uri": self.uri(branch, pooled=query.get("pooled") == "true")}

    def _create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        spec = body.get("branch", {})
        parent = self.branches.get(spec.get("parent_id") or self.main.id)
        if parent is None:
            return 404, {"message": "parent branch not found"}
        name = spec.get("name") or f"branch-{secrets.token_hex(3)}"
        if any(b.name == name for b in self.branches.values()):
            return 409, {"message": f"branch {name} already exists"}
        branch = self._new_branch(name, parent)
        self._route(branch)
        operations = [self._operation("create_branch", branch), self._operation("start_compute", branch)]
        endpoint = {"id": branch.endpoint_id, "host": f"{branch.endpoint_id}.us-east-1.aws.neon.tech"}
        return 201, {"branch": branch.as_json(), "endpoints": [endpoint], "operations": operations}

    def _delete(self, branch: FakeBranch) -> tuple[int, dict[str, Any]]:
        if branch.default:
            return 422, {"message": "cannot delete the default branch"}
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(branch.database)))
        del self.branches[branch.id]
        if self.proxy is not None:
            self.proxy.routes.pop(branch.endpoint_id, None)
        return 200, {"branch": branch.as_json(), "operations": [self._operation("delete_timeline", branch)]}

    def _restore(self, target: FakeBranch, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        source = self.branches.get(str(body.get("source_branch_id")))
        if source is None:
            return 404, {"message": "source branch not found"}
        preserved_name = body.get("preserve_under_name")
        new_database = f"{self._prefix}_{secrets.token_hex(4)}"
        self._copy(source.database, new_database)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:  # the compute restarts: sessions end
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (target.database,)
            )
        if preserved_name:
            keep = FakeBranch(
                id=f"br-{secrets.token_hex(4)}",
                name=preserved_name,
                database=target.database,
                endpoint_id=f"ep-fake-{secrets.token_hex(4)}",
                parent_id=target.id,
            )
            self.branches[keep.id] = keep
            self._route(keep)
        else:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(target.database)))
        target.database = new_database
        self._route(target)
        return 200, {"branch": target.as_json(), "operations": [self._operation("restore_branch", target)]}


@contextlib.contextmanager
def neon_project(admin_dsn: str, pg_port: int, folder: Path) -> Iterator[FakeNeonApi]:
    """A fake Neon project on the server ``admin_dsn`` names, reached through a TLS proxy whose certificate (made in
    ``folder``) covers Neon's endpoint host names."""
    pem = folder / "neon-server.pem"
    trustme.CA().issue_cert("*.us-east-1.aws.neon.tech").private_key_and_cert_chain_pem.write_to_path(str(pem))
    with (
        NeonProxy(upstream_port=pg_port, cert_file=pem, key_file=pem) as proxy,
        FakeNeonApi(admin_dsn=admin_dsn, pg_port=pg_port, proxy=proxy) as api,
    ):
        yield api


class _Handler(BaseHTTPRequestHandler):
    api: FakeNeonApi

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        if self.headers.get("Authorization") != f"Bearer {self.api.api_key}":
            self._reply(401, {"message": "authentication required"})
            return
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        try:
            status, payload = self.api.handle(method, parts.path.removeprefix("/api/v2"), query, body)
        except psycopg.Error as exc:
            status, payload = 500, {"message": f"fake failed: {exc}"}
        self._reply(status, payload)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
