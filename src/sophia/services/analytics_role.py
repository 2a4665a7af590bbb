"""analytics-mcp's own database role: enabling its login, and checking it holds no more than read access.

``ops/sql/002_analytics_login.sql`` creates ``sophia_analytics_mcp`` (NOLOGIN, reads the schemas granted to
``sophia_analytics``). ``provision_login`` is the secret-holder's half: it gives the role a login and password,
sent to the server as a SCRAM verifier computed here, so the clear password never reaches the server (or its
statement log). The local platform calls it at ``sophia local up``; on a fresh database it creates the role
first, with no privileges at all until the migration grants them.

``privilege_problems`` is what analytics-mcp checks before it serves: a role that can do more than read (a
superuser, the database owner, a member of the predefined roles for server files, signals or all data, or one
that may write a table) makes the service not ready, so a misconfigured DSN is noticed, not used.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

ANALYTICS_ROLE = "sophia_analytics_mcp"

_CREATE_IF_MISSING = f"""
DO $$
BEGIN
    BEGIN
        CREATE ROLE {ANALYTICS_ROLE} NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
END
$$"""

FORBIDDEN_MEMBERSHIPS = (
    "pg_read_server_files", "pg_write_server_files", "pg_execute_server_program", "pg_signal_backend",
    "pg_read_all_data", "pg_write_all_data", "pg_database_owner",
)  # fmt: skip

_CHECK = """
SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
       ARRAY(SELECT m FROM unnest(%(roles)s::text[]) AS m
              WHERE to_regrole(m) IS NOT NULL AND pg_has_role(current_user, m, 'USAGE')),
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
           AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')),
       (SELECT count(*) FROM pg_class c WHERE pg_has_role(current_user, c.relowner, 'USAGE')
           AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace))
  FROM pg_roles r WHERE r.rolname = current_user
"""


def provision_login(admin_dsn: str, password: str, role: str = ANALYTICS_ROLE) -> None:
    """Create ``role`` if it is missing (NOLOGIN, no grants), then let it log in with ``password``."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if role == ANALYTICS_ROLE:
            conn.execute(_CREATE_IF_MISSING)
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))


async def privilege_problems(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Why the connected role may do more than read; empty when it holds read access only."""
    cursor = await conn.execute(_CHECK, {"roles": list(FORBIDDEN_MEMBERSHIPS)})
    row = await cursor.fetchone()
    if row is None:
        return ["the connected role is not visible in pg_roles"]
    names = ("superuser", "createrole", "createdb", "replication", "bypassrls")
    problems = [f"the role has {name}" for name, held in zip(names, row[:5], strict=True) if held]
    problems += [f"the role is a member of {m}" for m in row[5]]
    if row[6]:
        problems.append(f"the role may write {row[6]} table(s)")
    if row[7]:
        problems.append(f"the role owns {row[7]} relation(s)")
    return problems
