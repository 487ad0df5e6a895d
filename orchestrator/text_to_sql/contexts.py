"""Text-to-SQL contexts: a dataset's schema prompt before the session, its query after.

A session started with `{"context": {"database": NAME}}` gets the dataset's schema as its
(cacheable) system prompt; its answer opens a ```sql block and stops at the block's closing
fence, or once its first statement is complete and the model goes on past it. Then the SQL is
extracted, checked and run read-only as the dataset's reader role, and the `done` frame carries
the rows or the refusal.
`SqlContext` is what the session core knows as a `SessionContext` (`core/contexts.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.core.contexts import Ending
from orchestrator.db.server import Database
from orchestrator.errors import DatabaseError, InvalidRequest
from orchestrator.text_to_sql.extract import extract_sql, statement_complete
from orchestrator.text_to_sql.guard import SqlRefused, validate_sql
from orchestrator.text_to_sql.prompt import (
    ANSWER_OPENING,
    QUESTION_OPENING,
    STOP_SEQUENCES,
    schema_prompt,
)
from orchestrator.text_to_sql.runner import run_query
from orchestrator.text_to_sql.seed import ensure_dataset, list_datasets

MAX_ROWS = 100
QUERY_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class SqlContext:
    """One dataset, ready for sessions: its schema prompt and its read-only URL."""

    name: str
    system_prompt: str
    reader_url: str
    openings: tuple[str, str] = (QUESTION_OPENING, ANSWER_OPENING)
    stop_sequences: tuple[str, ...] = STOP_SEQUENCES

    def answer_complete(self, answer: str) -> Ending | None:
        """`sql_complete`, at the `;` that ends the query, once the model goes on past it."""
        end = statement_complete(answer)
        return None if end is None else Ending("sql_complete", end)

    async def after_answer(self, answer: str) -> dict[str, Any]:
        """The `done` frame's SQL fields for the model's answer."""
        return await answer_query(self, answer)


class SqlContexts:
    """The datasets this server serves, loaded (and seeded) at start-up."""

    def __init__(self) -> None:
        self.contexts: dict[str, SqlContext] = {}

    async def load(self, database: Database, root: Path) -> None:
        for name, folder in list_datasets(root).items():
            await ensure_dataset(database, name, folder)
            prompt = schema_prompt((folder / "schema.sql").read_text(), name)
            self.contexts[name] = SqlContext(name, prompt, database.dataset_url(name, reader=True))

    def get(self, name: str) -> SqlContext:
        if name not in self.contexts:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise InvalidRequest(
                f"unknown database {name!r} (known: {known})",
                param="context.database",
                code="unknown_database",
            )
        return self.contexts[name]

    def names(self) -> list[str]:
        return sorted(self.contexts)


async def answer_query(context: SqlContext, answer: str) -> dict[str, Any]:
    """The `done` frame's SQL fields: the query and its rows, or why it was not run."""
    sql = extract_sql(answer)
    if sql is None:
        return {"sql": None, "refused": "the answer holds no SQL query"}
    try:
        checked = validate_sql(sql)
        result = await run_query(
            context.reader_url, checked, timeout_ms=QUERY_TIMEOUT_MS, max_rows=MAX_ROWS
        )
    except (SqlRefused, DatabaseError) as error:
        return {"sql": sql, "refused": error.message}
    return {
        "sql": checked,
        "columns": result.columns,
        "rows": result.rows,
        "truncated": result.truncated,
        "query_ms": round(result.ms, 2),
    }
