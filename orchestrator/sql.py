"""Text-to-SQL pieces: the cacheable schema prompt, SQL out of a model's answer, a validator,
a sandboxed runner and execution-accuracy comparison (Spider test-suite semantics).

Defence in depth: `validate_sql` admits one plain SELECT; `run_query` runs a query as the
dataset's SELECT-only reader, in a READ ONLY transaction with timeouts, always rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import sqlglot
from psycopg import errors as pg_errors
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from orchestrator.errors import DatabaseError, InvalidRequest

DIALECT = "postgres"
SAMPLE_ROWS = 3  # at most this many sample rows per table in the prompt
SAMPLE_TEXT = 60  # sample strings are cut to this many characters
CONNECT_TIMEOUT_S = 5
LOCK_MS = 1000  # lock_timeout, at most
GRACE_S = 5.0  # the client gives up this long after the server's statement_timeout
MAX_PERMUTED_COLUMNS = 6
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

# A SQL lexeme that may hide a `;` or a comment marker: strings, quoted names, $tag$, comments.
_LEXEME = re.compile(
    r"'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?|\$(\w*)\$|--[^\n]*|/\*.*?(?:\*/|\Z)|;", re.S
)
_NOISY_COMMENT = re.compile(  # pg_dump's boilerplate, rules and empty comments
    r"^(--|/\*)[\W_]*$|PostgreSQL database dump|Dumped (from|by)|; Type: |TOC entry", re.I
)
_NOISE = re.compile(  # statements a model needs not see (after comments, if any)
    r"(\s*(--[^\n]*|/\*.*?\*/))*\s*(SET|SELECT|BEGIN|COMMIT|START|GRANT|REVOKE|ANALYZE|VACUUM|CREATE\s+(UNIQUE\s+)?INDEX"
    r"|CREATE\s+EXTENSION|COMMENT\s+ON\s+EXTENSION|(CREATE|ALTER)\s+SEQUENCE|ALTER\s+DEFAULT"
    r"|ALTER\s.*\sOWNER\s+TO)\b",
    re.I | re.S,
)
_TIMEOUTS = "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)"
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```(?:[ \t]*([A-Za-z][\w+-]*)?[ \t]*\n)?(.*?)(?:```|\Z)", re.S)
_SQL_TAGS = frozenset({"sql", "postgres", "postgresql", "psql", "pgsql"})
_LABEL = re.compile(r"^\s*(?:sql|query|answer)\s*:\s*", re.I)
_CTE = r"\b(?P<k>WITH\s+(RECURSIVE\s+)?\"?\w+\"?\s*(\([^()]*\))?\s*AS\s*"  # ...AS (
_CTE += r"(NOT\s+)?(MATERIALIZED)?\s*\()"
_STARTS = (
    re.compile(r"\b(?P<k>SELECT)\b"),  # upper case: SQL rather than prose
    re.compile(_CTE, re.I),  # WITH name [(columns)] AS [NOT] [MATERIALIZED] (
    re.compile(r"(?:^[ \t]*|:\s*)(?P<k>select)\b", re.I | re.M),  # at a line's start, after a :
)
_END = re.compile(r"```|<\||\n\s*(?=[A-Z][a-z]+(?::|(?: [a-z]+){2}\b)|\*\*|#)")


class SqlRefused(InvalidRequest):
    """A query we will not run, or that the database would not run; the message says why."""

    code = "sql_refused"


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]  # JSON-safe values (see `json_safe`)
    truncated: bool  # more than `max_rows` rows existed
    ms: float


Rows = Sequence[Sequence[Any]]


def schema_prompt(
    schema_sql: str, dataset_name: str, sample_rows: dict[str, list[tuple[Any, ...]]] | None = None
) -> str:
    """The system prompt for a dataset: deterministic, so its KV-cache blocks are reusable."""
    parts = [
        f"You translate questions about the {dataset_name} database into one PostgreSQL query. "
        "Answer with a single SQL query in a ```sql block, no explanation."
    ]
    kept = [(s, c) for s, c in _split_sql(schema_sql) if not _NOISE.match(s)]
    parts.append("\n\n".join(f"{s}; {c}".rstrip() for s, c in kept))
    samples = sample_rows or {}
    for table in sorted(t for t in samples if samples[t]):
        lines = ["(" + ", ".join(map(_literal, row)) + ")" for row in samples[table][:SAMPLE_ROWS]]
        body = "\n".join(lines).replace("*/", "* /")
        parts.append(f"/* Sample rows from {table}:\n{body}\n*/")
    return "\n\n".join(p for p in parts if p)


def extract_sql(text: str) -> str | None:
    """The SQL in a model's answer: its ```sql block, else the text from the first SELECT/WITH."""
    text = _THINK.sub("", text.replace("\r\n", "\n"))
    untagged: str | None = None
    for match in _FENCE.finditer(text):
        tag, body = (match.group(1) or "").lower(), _LABEL.sub("", match.group(2))
        if tag in _SQL_TAGS and body.strip():
            return body.strip().rstrip("; \t\n") or None
        if not tag and untagged is None and (start := _start(body)) is not None:
            untagged = body[start:].strip().rstrip("; \t\n")
    if untagged or (start := _start(text)) is None:
        return untagged or None
    rest = text[start:]
    end = _END.search(rest)
    statements = _split_sql(rest[: end.start()] if end else rest)
    return statements[0][0].rstrip("; \t\n") if statements else None


def validate_sql(sql: str) -> str:
    """`sql` normalized if it is one read-only SELECT; else raise `SqlRefused` saying why."""
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except TokenError as exc:
        raise SqlRefused(f"not valid SQL: {_reason(exc)}") from None
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
    normalized = _check(_parse(sql)).sql(dialect=DIALECT, comments=False)
    _check(_parse(normalized))  # what runs is what was checked
    return normalized


async def run_query(
    reader_url: str, sql: str, *, timeout_ms: int = 3000, max_rows: int = 100
) -> QueryResult:
    """Run `sql` as the reader in a READ ONLY transaction, rolled back; at most `max_rows` rows."""
    timeout_ms = max(1, timeout_ms)  # 0 would mean no statement_timeout at all
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S + 1):
            conn = await psycopg.AsyncConnection.connect(
                reader_url, connect_timeout=CONNECT_TIMEOUT_S
            )
    except (psycopg.Error, OSError, TimeoutError) as exc:
        raise DatabaseError(f"the database is unreachable: {_reason(exc)}") from exc
    try:
        async with asyncio.timeout(timeout_ms / 1000 + GRACE_S):  # should the server not stop it
            try:
                await conn.set_read_only(True)  # every transaction opens with BEGIN READ ONLY
                await conn.execute(_TIMEOUTS, (f"{timeout_ms}ms", f"{min(timeout_ms, LOCK_MS)}ms"))
                started = time.perf_counter()
                # A server-side cursor: DECLARE takes one query only; max_rows+1 rows come back.
                async with conn.cursor(name="prefill_ahead_query") as cursor:
                    await cursor.execute(sql.encode())
                    rows = await cursor.fetchmany(max_rows + 1)
                    columns = [column.name for column in cursor.description or ()]
                ms = (time.perf_counter() - started) * 1000
            finally:
                with contextlib.suppress(psycopg.Error):
                    await conn.rollback()
    except TimeoutError:
        raise DatabaseError(f"the database did not answer within {timeout_ms} ms") from None
    except pg_errors.QueryCanceled:
        raise SqlRefused(f"the query ran longer than {timeout_ms} ms") from None
    except psycopg.Error as exc:
        if conn.broken:
            raise DatabaseError(f"the database connection failed: {_reason(exc)}") from exc
        raise SqlRefused(f"the database rejected the query: {_reason(exc)}") from None
    finally:
        await conn.close()
    safe = [[json_safe(v) for v in row] for row in rows[:max_rows]]
    return QueryResult(columns, safe, truncated=len(rows) > max_rows, ms=round(ms, 3))


def gold_orders(sql: str) -> bool:
    """Whether the (gold) query's outermost level has an ORDER BY, so row order matters."""
    try:
        node: exp.Expr | None = _parse(sql)
    except SqlRefused:
        return re.search(r"\border\s+by\b", sql, re.I) is not None
    while node is not None:
        if node.args.get("order"):
            return True
        node = node.this if isinstance(node, exp.Subquery) else None
    return False


def results_match(
    gold: QueryResult | Rows, predicted: QueryResult | Rows, *, ordered: bool
) -> bool:
    """Execution match: same bag of rows (same list if `ordered`), columns in any order."""
    want, got = _canonical(gold), _canonical(predicted)
    if len(want) != len(got):
        return False
    if not want:
        return True
    width = len(want[0])
    if any(len(row) != width for row in [*want, *got]):
        return False
    if width > MAX_PERMUTED_COLUMNS:
        return _same(want, got, ordered)
    have = [Counter(row[i] for row in got) for i in range(width)]
    need = [Counter(row[i] for row in want) for i in range(width)]
    fits = [{j for j in range(width) if have[j] == need[i]} for i in range(width)]
    for order in itertools.permutations(range(width)):
        fitting = all(order[i] in fits[i] for i in range(width))
        if fitting and _same(want, [tuple(row[j] for j in order) for row in got], ordered):
            return True
    return False


def json_safe(value: Any) -> Any:
    """`value` as JSON can hold it: Decimal → float, dates → ISO, bytes → \\x hex, NaN → str."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal | float):
        number = float(value)
        return number if math.isfinite(number) else str(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)


def _parse(sql: str) -> exp.Expr:
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


def _split_sql(text: str) -> list[tuple[str, str]]:
    """The statements in `text` without their `;`, blank lines or noisy comments; each with the
    comment that follows its `;` on the same line, if any."""
    done: list[tuple[str, str]] = []
    current = code = ""  # the statement so far, and the same without its comments
    pos = 0
    while (match := _LEXEME.search(text, pos)) is not None:
        lexeme, before = match.group(), text[pos : match.start()]
        current, code, pos = current + before, code + before, match.end()
        if match.group(1) is not None:  # $tag$ ... $tag$
            close = text.find(lexeme, pos)
            pos = len(text) if close < 0 else close + len(lexeme)
            lexeme = text[match.start() : pos]
        if lexeme == ";":
            done += [(current, "")] if code.strip() else []
            current = code = ""
        elif not lexeme.startswith(("--", "/*")):
            current, code = current + lexeme, code + lexeme
        elif current[current.rfind("\n") + 1 :].strip():  # a comment beside code
            current += lexeme
        elif done and not current.strip() and "\n" not in current and not done[-1][1]:
            done[-1] = (done[-1][0], lexeme)  # `...; -- note`
        elif not _NOISY_COMMENT.search(lexeme):
            current += lexeme
    done += [(current + text[pos:], "")] if (code + text[pos:]).strip() else []
    tidy = [("\n".join(ln.rstrip() for ln in s.splitlines() if ln.strip()), c) for s, c in done]
    return [(s.strip(), c) for s, c in tidy]


def _start(text: str) -> int | None:
    return min((m.start("k") for p in _STARTS if (m := p.search(text))), default=None)


def _literal(value: Any) -> str:
    value = json_safe(value)
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = text if len(text) <= SAMPLE_TEXT else text[: SAMPLE_TEXT - 1] + "…"
    return "'" + text.replace("'", "''") + "'"


def _canonical(result: QueryResult | Rows) -> list[tuple[Any, ...]]:
    rows = result.rows if isinstance(result, QueryResult) else result
    return [tuple(_comparable(json_safe(v)) for v in row) for row in rows]


def _comparable(value: Any) -> Any:  # of a json_safe value
    if isinstance(value, float):
        return round(value, 6) + 0.0  # + 0.0: -0.0 becomes 0.0
    if isinstance(value, list):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def _same(want: list[tuple[Any, ...]], got: list[tuple[Any, ...]], ordered: bool) -> bool:
    return want == got if ordered else Counter(want) == Counter(got)


def _reason(exc: BaseException) -> str:
    """One line saying why (libpq's 'connection to ... failed: why' shortened to the why)."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    return "timed out" if isinstance(exc, TimeoutError) else lines[0].rsplit("failed: ", 1)[-1]
