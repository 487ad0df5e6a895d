"""The cacheable schema prompt of a dataset, and the openings around the user's question.

The prompt is deterministic (the same schema gives the same text), so its KV-cache blocks are
reused by every session on the dataset.
"""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrator.text_to_sql.lexing import split_sql
from orchestrator.text_to_sql.values import json_safe

SAMPLE_ROWS = 3  # at most this many sample rows per table in the prompt
SAMPLE_TEXT = 60  # sample strings are cut to this many characters
# The user's question comes last, after this; the answer starts as a ```sql block, so that even
# the bundled 135M model answers with a query rather than prose (measured: 0 of 10 answers held
# SQL without the answer's opening, 9 of 10 with it).
QUESTION_OPENING = "Write one PostgreSQL query that answers this question:\n"
ANSWER_OPENING = "```sql\n"
# The final request stops at the block's closing fence (kept in the answer): what the model
# writes after its query (measured: an explanation of it) is never generated.
STOP_SEQUENCES = ("```",)
_NOISE = re.compile(  # statements a model needs not see (after comments, if any)
    r"(\s*(--[^\n]*|/\*.*?\*/))*\s*(SET|SELECT|BEGIN|COMMIT|START|GRANT|REVOKE|ANALYZE|VACUUM|CREATE\s+(UNIQUE\s+)?INDEX"
    r"|CREATE\s+EXTENSION|COMMENT\s+ON\s+EXTENSION|(CREATE|ALTER)\s+SEQUENCE|ALTER\s+DEFAULT"
    r"|ALTER\s.*\sOWNER\s+TO)\b",
    re.I | re.S,
)


def schema_prompt(
    schema_sql: str, dataset_name: str, sample_rows: dict[str, list[tuple[Any, ...]]] | None = None
) -> str:
    """The system prompt for a dataset: deterministic, so its KV-cache blocks are reusable."""
    parts = [
        f"You translate questions about the {dataset_name} database into one PostgreSQL query. "
        "Answer with a single SQL query in a ```sql block, no explanation."
    ]
    kept = [(s, c) for s, c in split_sql(schema_sql) if not _NOISE.match(s)]
    parts.append("\n\n".join(f"{s}; {c}".rstrip() for s, c in kept))
    samples = sample_rows or {}
    for table in sorted(t for t in samples if samples[t]):
        lines = ["(" + ", ".join(map(_literal, row)) + ")" for row in samples[table][:SAMPLE_ROWS]]
        body = "\n".join(lines).replace("*/", "* /")
        parts.append(f"/* Sample rows from {table}:\n{body}\n*/")
    return "\n\n".join(p for p in parts if p)


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
