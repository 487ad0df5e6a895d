"""What a session may be started on besides a system prompt: a named context (a text-to-SQL
dataset). The core knows only these protocols; `text_to_sql/contexts.py` implements them."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol


class Ending(NamedTuple):
    """Where a streamed answer is complete, by its context's judgement."""

    reason: str  # the `done` frame's `stop_reason`
    end: int  # the answer's length: what was streamed after it is dropped


class SessionContext(Protocol):
    @property
    def system_prompt(self) -> str: ...

    @property
    def openings(self) -> tuple[str, str]: ...

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """Where the final request stops (vLLM's `stop`, the match kept in the answer)."""
        ...

    def answer_complete(self, answer: str) -> Ending | None:
        """Where and why the answer streamed so far is complete (generation stops there);
        None while it is not."""
        ...

    async def after_answer(self, answer: str) -> dict[str, Any]:
        """Fields the `done` frame gets for a complete answer (the SQL and its rows)."""
        ...


class ContextSource(Protocol):
    def get(self, name: str) -> SessionContext:
        """The named context, or InvalidRequest."""
        ...

    def names(self) -> list[str]: ...
