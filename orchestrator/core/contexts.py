"""What a session may be started on besides a system prompt: a named context (a text-to-SQL
dataset). The core knows only these protocols; `text_to_sql/contexts.py` implements them."""

from __future__ import annotations

from typing import Any, Protocol


class SessionContext(Protocol):
    @property
    def system_prompt(self) -> str: ...

    @property
    def openings(self) -> tuple[str, str]: ...

    async def after_answer(self, answer: str) -> dict[str, Any]:
        """Fields the `done` frame gets for a complete answer (the SQL and its rows)."""
        ...


class ContextSource(Protocol):
    def get(self, name: str) -> SessionContext:
        """The named context, or InvalidRequest."""
        ...

    def names(self) -> list[str]: ...
