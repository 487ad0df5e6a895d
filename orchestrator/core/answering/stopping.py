"""Where a final answer stops, and why it stopped: the `done` frame's `stop_reason`.

A session's context may end its answers early: with stop sequences sent to vLLM (text-to-SQL:
the closing fence of the answer's ```sql block), and by judging the answer streamed so far
complete, when the server ends the stream itself (text-to-SQL: the query is written and the
model goes on past it). A chat has neither: its answers run until the model's end of text or
`max_tokens`.

`stop_reason`: `stop_sequence` (vLLM matched one of the context's stop sequences), the
context's own reason (`sql_complete`), `eos` (the model's end of text, or a stop token),
`length` (`max_tokens`), `cancelled` (the client's cancel); vLLM's finish reason as it is for
anything else, null when the stream ended without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.core.contexts import SessionContext


def stop_fields(context: SessionContext | None) -> dict[str, Any]:
    """The final request's stop fields: the context's stop sequences, kept in the output."""
    stops = () if context is None else context.stop_sequences
    return {"stop": list(stops), "include_stop_str_in_output": True} if stops else {}


@dataclass
class Stopping:
    """Follows one final answer's stream: what vLLM says of its end, and the context's word."""

    context: SessionContext | None
    finish: str | None = None  # vLLM's finish_reason, "stop" when the context ended it
    matched: str | int | None = None  # vLLM's stop_reason: the stop string or token id
    judged: str | None = None  # the context's reason, when it ended the answer itself

    def see(self, choice: dict[str, Any]) -> None:
        """One streamed choice."""
        if choice.get("finish_reason"):
            self.finish = str(choice["finish_reason"])
            self.matched = choice.get("stop_reason")

    def admit(self, answer: str, text: str) -> str:
        """What of `text`, streamed after `answer`, belongs to the answer: all of it, or, once
        the context judges the answer complete, the part that completes it (then the caller
        stops reading the stream; vLLM has not ended it)."""
        if self.context is None or self.finish is not None or self.judged is not None:
            return text
        ending = self.context.answer_complete(answer + text) if text else None
        if ending is None:
            return text
        self.judged, self.finish = ending.reason, "stop"
        return text[: max(0, ending.end - len(answer))]

    def cancelled(self) -> None:
        self.finish = "cancelled"

    @property
    def reason(self) -> str | None:
        """The `done` frame's `stop_reason`."""
        if self.judged is not None and self.finish != "cancelled":
            return self.judged
        if self.finish == "stop":
            return "stop_sequence" if isinstance(self.matched, str) else "eos"
        return self.finish
