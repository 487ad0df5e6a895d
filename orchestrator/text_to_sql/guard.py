"""The guard: a model's query runs only if it is one plain, read-only SELECT.

Defence in depth: what passes here still runs as the dataset's SELECT-only reader in a READ
ONLY transaction (`runner.py`).
"""

from __future__ import annotations

import itertools

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from orchestrator.errors import InvalidRequest

DIALECT = "postgres"
# fmt: off
DENIED_FUNCTIONS = frozenset({
    "pg_sleep", "pg_sleep_for", "pg_sleep_until", "set_config", "pg_read_file",
    "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import", "lo_export", "lo_unlink",
    "lo_create", "lo_creat", "lo_open", "lo_put", "lo_from_bytea", "loread", "lowrite",
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_notify", "txid_current", "pg_current_xact_id", "nextval", "setval", "currval", "lastval",
    "copy", "pg_file_write", "pg_promote", "pg_switch_wal", "pg_log_backend_memory_contexts",
})
DENIED_PREFIXES = ("dblink", "pg_advisory", "pg_try_advisory", "query_to_xml", "cursor_to_xml")
COMMANDS = frozenset({  # PostgreSQL's statement keywords (SELECT and WITH are let through)
    "ABORT", "ALTER", "ANALYZE", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER", "COMMENT",
    "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DISCARD", "DO", "DROP", "END",
    "EXECUTE", "EXPLAIN", "FETCH", "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD", "LOCK", "MERGE",
    "MOVE", "NOTIFY", "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "RELEASE", "RESET", "REVOKE",
    "ROLLBACK", "SAVEPOINT", "SECURITY", "SET", "SHOW", "START", "TABLE", "TRUNCATE", "UNLISTEN",
    "UPDATE", "VACUUM", "VALUES",
})
_STATEMENTS = (
    exp.DDL, exp.DML, exp.Drop, exp.Alter, exp.Command, exp.Set, exp.Grant, exp.Revoke,
    exp.TruncateTable, exp.Comment, exp.Transaction, exp.Commit, exp.Rollback, exp.Analyze,
)
# fmt: on
_NAMES = {"truncatetable": "TRUNCATE", "transaction": "BEGIN"}


class SqlRefused(InvalidRequest):
    """A query we will not run, or that the database would not run; the message says why."""

    code = "sql_refused"


def validate_sql(sql: str) -> str:
    """`sql` normalized if it is one read-only SELECT; else raise `SqlRefused` saying why."""
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except TokenError as exc:
        raise SqlRefused(f"not valid SQL: {_first_line(exc)}") from None
    split = itertools.groupby(tokens, lambda t: t.token_type == sqlglot.TokenType.SEMICOLON)
    statements = [list(group) for semicolon, group in split if not semicolon]
    if len(statements) != 1:
        got = f"got {len(statements)} statements" if statements else "got none"
        raise SqlRefused(f"only one SELECT query is allowed; {got}")
    first = statements[0][0].text.upper()
    if first not in ("SELECT", "WITH", "("):
        if first in COMMANDS:
            raise SqlRefused(f"{first} is not allowed")
        raise SqlRefused(f"not valid SQL: a query starts with SELECT or WITH, not {first!r}")
    normalized = _check(parse_sql(sql)).sql(dialect=DIALECT, comments=False)
    _check(parse_sql(normalized))  # what runs is what was checked
    return normalized


def parse_sql(sql: str) -> exp.Expr:
    try:
        trees = [t for t in sqlglot.parse(sql, read=DIALECT) if t is not None]
    except ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        near = f" near {error['highlight']!r}" if error.get("highlight") else ""
        where = f" (line {error['line']}, column {error['col']})" if "line" in error else ""
        raise SqlRefused(f"not valid SQL: syntax error{near}{where}") from None
    if len(trees) != 1:
        raise SqlRefused(f"only one SELECT query is allowed; got {len(trees)} statements")
    return trees[0]


def _check(tree: exp.Expr) -> exp.Expr:
    for node in tree.walk():
        if isinstance(node, _STATEMENTS):
            name = str(node.this) if isinstance(node, exp.Command) else node.key
            raise SqlRefused(f"{_NAMES.get(node.key, name.upper())} is not allowed")
        if isinstance(node, exp.Select) and node.args.get("into"):
            raise SqlRefused("SELECT ... INTO is not allowed")
        if isinstance(node, exp.Lock):
            update, key = node.args.get("update"), node.args.get("key")
            kind = (
                ("NO KEY UPDATE" if key else "UPDATE") if update else ("KEY " * bool(key) + "SHARE")
            )
            raise SqlRefused(f"FOR {kind} is not allowed")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES):
                raise SqlRefused(f"function {name} is not allowed")
    root = tree
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, exp.Select | exp.SetOperation):
        raise SqlRefused(f"only a SELECT query is allowed, not {root.key.upper()}")
    return tree


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    return lines[0].rsplit("failed: ", 1)[-1]
