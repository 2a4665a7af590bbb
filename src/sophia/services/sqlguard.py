"""Screening one analytics statement with Postgres's own parser (pglast = libpg_query) before it is run.

This is the second line of defence; the first is the role's privileges (``analytics_role.py``). A statement
passes when it is exactly one ``SELECT`` (``WITH``, ``VALUES`` and ``TABLE`` parse as one), ``EXPLAIN`` of one,
or ``SHOW``, and nowhere in it is there:

* a data-modifying statement (a ``WITH`` holding ``INSERT``/``UPDATE``/``DELETE``/``MERGE``), ``SELECT INTO``,
  or a row lock (``FOR UPDATE``/``SHARE``);
* a call to a function in ``DENIED_FUNCTIONS`` / ``DENIED_PREFIXES``: signalling other sessions, advisory locks,
  sleeping, changing settings or role, server files and large objects, configuration reloads, and the functions
  that run SQL given as text (``query_to_xml``, ``ts_stat``, ...), which would hide a statement from this check;
* a relation named in a schema outside the allowed ones (``pg_catalog`` and ``information_schema`` included).
  Unqualified names are resolved by the server later (``unqualified``), since only it knows the search path.

Parameters are Postgres's own ``$1 … $n``; the statement must use exactly as many as it is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pglast.parser import ParseError, parse_sql_json

from sophia.services.errors import ServiceError

StatementKind = Literal["query", "explain", "show"]

DENIED_FUNCTIONS = frozenset({
    "pg_cancel_backend", "pg_terminate_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_promote",
    "pg_log_backend_memory_contexts", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "set_config",
    "pg_current_logfile", "pg_stat_file", "pg_notify", "pg_logical_emit_message", "pg_switch_wal",
    "pg_create_restore_point", "pg_backup_start", "pg_backup_stop", "pg_export_snapshot", "pg_import_system_collations",
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema",
    "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema", "schema_to_xml", "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
    "ts_stat", "dblink", "dblink_exec", "txid_current", "pg_current_xact_id", "nextval", "setval",
})  # fmt: skip
DENIED_PREFIXES = (
    "pg_advisory_", "pg_try_advisory_", "pg_read_", "pg_ls_", "lo_", "dblink_", "pg_stat_reset", "pg_replication_",
    "pg_create_", "pg_drop_", "pg_file_", "pg_wal_",
)  # fmt: skip
_STATEMENT_NAMES = {"VariableSetStmt": "SET", "TransactionStmt": "transaction control", "DoStmt": "DO"}
_WRITES = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})


class QueryRejected(ServiceError):
    """The statement was refused or failed; ``detail`` carries Postgres's own message when there is one."""

    status = 400


@dataclass(frozen=True)
class Screened:
    kind: StatementKind
    unqualified: tuple[str, ...]  # relation names the server must place in a schema


def _nodes(tree: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``{"NodeType": {...}}`` in a pglast JSON tree, depth first."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key[:1].isupper() and isinstance(value, dict):
                    yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _function_name(node: dict[str, Any]) -> str:
    parts = [p.get("String", {}).get("sval", "") for p in node.get("funcname", [])]
    return parts[-1].lower() if parts else ""


def denied_function(name: str) -> bool:
    return name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES)


def _statement(sql: str) -> dict[str, Any]:
    try:
        parsed = json.loads(parse_sql_json(sql))
    except ParseError as exc:
        raise QueryRejected(f"query failed: {exc}", detail=str(exc)) from None
    statements = parsed.get("stmts", [])
    if len(statements) != 1:
        raise QueryRejected(f"exactly one statement is allowed, got {len(statements)}")
    statement: dict[str, Any] = statements[0]["stmt"]
    return statement


def _kind(statement: dict[str, Any]) -> StatementKind:
    (node_type, node), *_ = statement.items()
    if node_type == "SelectStmt":
        return "query"
    if node_type == "ExplainStmt" and "SelectStmt" in node.get("query", {}):
        return "explain"
    if node_type == "VariableShowStmt":
        return "show"
    if node_type == "ExplainStmt":
        raise QueryRejected("read-only endpoint: EXPLAIN of anything but a SELECT is refused")
    shown = _STATEMENT_NAMES.get(node_type, node_type.removesuffix("Stmt").upper())
    raise QueryRejected(f"read-only endpoint: {shown} statements are refused (allowed: SELECT, EXPLAIN, SHOW)")


def screen(sql: str, param_count: int, schemas: tuple[str, ...]) -> Screened:
    """Check ``sql`` as described above; raises ``QueryRejected`` naming the first reason."""
    statement = _statement(sql)
    kind = _kind(statement)
    unqualified: set[str] = set()
    highest_param = 0
    for node_type, node in _nodes(statement):
        if node_type in _WRITES:
            raise QueryRejected("read-only endpoint: write statements are refused (data-modifying WITH)")
        if node_type == "SelectStmt" and (node.get("intoClause") or node.get("lockingClause")):
            raise QueryRejected("read-only endpoint: SELECT INTO and row locks (FOR UPDATE/SHARE) are refused")
        if node_type == "FuncCall" and denied_function(_function_name(node)):
            raise QueryRejected(f"function {_function_name(node)}() is not available on this endpoint")
        if node_type == "RangeVar":
            schema = node.get("schemaname")
            if node.get("catalogname") or (schema is not None and schema not in schemas):
                raise QueryRejected(f"only the schemas {', '.join(schemas)} can be read (not {schema})")
            if schema is None:
                unqualified.add(node["relname"])
        if node_type == "ParamRef":
            highest_param = max(highest_param, int(node.get("number", 0)))
    if highest_param != param_count:
        raise QueryRejected(f"the statement uses {highest_param} parameter(s) ($1…) but {param_count} were given")
    return Screened(kind=kind, unqualified=tuple(sorted(unqualified)))
