"""The SQL in a model's answer: its ```sql block, else the text from its first SELECT/WITH."""

from __future__ import annotations

import re

from orchestrator.text_to_sql.lexing import split_sql

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
    statements = split_sql(rest[: end.start()] if end else rest)
    return statements[0][0].rstrip("; \t\n") if statements else None


def _start(text: str) -> int | None:
    return min((m.start("k") for p in _STARTS if (m := p.search(text))), default=None)
