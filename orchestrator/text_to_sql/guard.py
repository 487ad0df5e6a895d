"""The guard: a model's query runs only if it is one SELECT made of allowed parts.

An allow-list (`allowed.py`): the statement is a SELECT (a set operation of SELECTs, or WITH
whose every part is a SELECT), every function it calls is a built-in that computes from its
arguments alone, every other part of it is plain query syntax, and no table it names is a
system catalog (`pg_*`, `pg_catalog`). Anything else is refused with the reason. Input longer
than `MAX_SQL_CHARS` or nested deeper than `MAX_DEPTH` is refused before it is parsed.

Defence in depth: what passes here still runs as the dataset's SELECT-only reader in a READ
ONLY transaction with a statement timeout (`runner.py`).
"""

from __future__ import annotations

import itertools

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from orchestrator.errors import InvalidRequest
from orchestrator.text_to_sql.allowed import FUNCTIONS, QUALIFIERS, SYNTAX, TYPED_FUNCTIONS

DIALECT = "postgres"
MAX_SQL_CHARS = 10_000  # a model's query is a few hundred characters
MAX_DEPTH = 64  # parentheses within parentheses
# fmt: off
COMMANDS = frozenset({  # PostgreSQL's statement keywords (SELECT and WITH are let through)
    "ABORT", "ALTER", "ANALYZE", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER", "COMMENT",
    "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DISCARD", "DO", "DROP", "END",
    "EXECUTE", "EXPLAIN", "FETCH", "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD", "LOCK", "MERGE",
    "MOVE", "NOTIFY", "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "RELEASE", "RESET", "REVOKE",
    "ROLLBACK", "SAVEPOINT", "SECURITY", "SET", "SHOW", "START", "TABLE", "TRUNCATE", "UNLISTEN",
    "UPDATE", "VACUUM", "VALUES",
})
# fmt: on
_NAMES = {"truncatetable": "TRUNCATE", "transaction": "BEGIN", "into": "SELECT ... INTO"}


class SqlRefused(InvalidRequest):
    """A query we will not run, or that the database would not run; the message says why."""

    code = "sql_refused"


def validate_sql(sql: str) -> str:
    """`sql` normalized if it is one allowed SELECT; else raise `SqlRefused` saying why."""
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRefused(f"the query is longer than {MAX_SQL_CHARS} characters")
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except TokenError as exc:
        raise SqlRefused(f"not valid SQL: {_first_line(exc)}") from None
    _check_depth(tokens)
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


def _check_depth(tokens: list[sqlglot.Token]) -> None:
    depth = 0
    for token in tokens:
        if token.token_type in (sqlglot.TokenType.L_PAREN, sqlglot.TokenType.L_BRACKET):
            depth += 1
            if depth > MAX_DEPTH:
                raise SqlRefused(f"the query is nested deeper than {MAX_DEPTH} levels")
        elif token.token_type in (sqlglot.TokenType.R_PAREN, sqlglot.TokenType.R_BRACKET):
            depth -= 1


def parse_sql(sql: str) -> exp.Expr:
    try:
        trees = [t for t in sqlglot.parse(sql, read=DIALECT) if t is not None]
    except ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        near = f" near {error['highlight']!r}" if error.get("highlight") else ""
        where = f" (line {error['line']}, column {error['col']})" if "line" in error else ""
        raise SqlRefused(f"not valid SQL: syntax error{near}{where}") from None
    except RecursionError:
        raise SqlRefused("not valid SQL: nested too deeply") from None
    if len(trees) != 1:
        raise SqlRefused(f"only one SELECT query is allowed; got {len(trees)} statements")
    return trees[0]


def _check(tree: exp.Expr) -> exp.Expr:
    for node in tree.walk():
        reason = _refusal(node)
        if reason is not None:
            raise SqlRefused(reason)
    root = tree
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, exp.Select | exp.SetOperation):
        raise SqlRefused(f"only a SELECT query is allowed, not {root.key.upper()}")
    return tree


def _refusal(node: exp.Expr) -> str | None:
    """Why `node` may not be part of a query; None when it may."""
    if isinstance(node, exp.Lock):
        update, key = node.args.get("update"), node.args.get("key")
        kind = ("NO KEY UPDATE" if key else "UPDATE") if update else ("KEY " * bool(key) + "SHARE")
        return f"FOR {kind} is not allowed"
    if isinstance(node, exp.Func):
        return _function_refusal(node)
    if type(node).__name__ not in SYNTAX:
        name = str(node.this) if isinstance(node, exp.Command) else node.key
        return f"{_NAMES.get(node.key, name.upper())} is not allowed"
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier) and is_catalog(node):
        return f"table {node.name} is not allowed: system catalogs are not the dataset's"
    return None


def is_catalog(table: exp.Table) -> bool:
    return table.db.lower() == "pg_catalog" or table.name.lower().startswith("pg_")


def _function_refusal(node: exp.Func) -> str | None:
    if not isinstance(node, exp.Anonymous):
        allowed = type(node).__name__ in TYPED_FUNCTIONS
        return None if allowed else f"function {node.sql_name().lower()} is not allowed"
    name = node.this if isinstance(node.this, exp.Identifier) else exp.to_identifier(node.this)
    bare = name.name if name.quoted else name.name.lower()
    if bare not in FUNCTIONS:
        return f"function {name.name.lower()} is not allowed"
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        schema = parent.this.name.lower() if isinstance(parent.this, exp.Expr) else ""
        if schema not in QUALIFIERS:
            return f"function {schema}.{bare} is not allowed: built-ins only (pg_catalog)"
    return None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    return lines[0].rsplit("failed: ", 1)[-1]
