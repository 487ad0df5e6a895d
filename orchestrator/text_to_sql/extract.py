"""The SQL in a model's answer: its ```sql block, else the text from its first SELECT/WITH; and
whether a streamed answer has gone on past its query."""

from __future__ import annotations

import re

from orchestrator.text_to_sql.lexing import split_sql, statement_end

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
_OPENING = re.compile(r"```[ \t]*(?:[A-Za-z][\w+-]*)?[ \t]*\n")  # a fenced block's first line
_BLANKS = re.compile(r"(?:\s+|--[^\n]*\n|/\*.*?\*/)*", re.S)  # blanks and whole comments
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


def statement_complete(answer: str) -> int | None:
    """Where a streamed answer that opens a fenced block is complete: just past the `;` that
    closes the block's first statement (outside strings and comments), once what follows it,
    past blanks and comments, is another statement or prose; not the closing fence (the
    final request's stop sequence ends the answer there) or what may begin one or a comment.
    None until then."""
    opening = _OPENING.match(answer)
    if opening is None:
        return None
    body = answer[opening.end() :]
    end = statement_end(body)
    if end is None or "```" in body[:end]:
        return None
    blanks = _BLANKS.match(body, end)
    rest = body[blanks.end() if blanks else end :]
    if not rest or rest.startswith(("`", "-", "/")):
        return None
    return opening.end() + end
