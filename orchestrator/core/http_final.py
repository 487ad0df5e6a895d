"""A final request sent over HTTP for a WebSocket session (`X-Session-Id`).

An app may stream keystrokes over the socket and submit over HTTP (an OpenAI chat
completion): the request then gets the very prompt a `submit` would send, token for token,
so it finds the blocks the session's warm-ups left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.core import frames
from orchestrator.core.prefill_cost import PrefillCost
from orchestrator.core.scorecard import ScoreSheet
from orchestrator.core.vllm_client import Usage
from orchestrator.errors import InvalidRequest


@dataclass(frozen=True)
class HttpFinal:
    """What an HTTP request needs to send a session's final prompt."""

    tokens: list[int]
    salt: str
    model: str
    answer_opening: str  # part of the prompt: the answer's text starts with it
    params: frames.GenerationParams
    sheet: ScoreSheet  # fixed before the session's warm-ups were settled
    cost: PrefillCost  # the application's shared prefill-cost fit

    def scorecard(self, usage: dict[str, Any] | None, ttft_ms: float | None) -> frames.Scorecard:
        """The request's scorecard from vLLM's `usage` body (once per request: it teaches the
        fit); `ttft_ms` is None for an answer that was not streamed."""
        return self.sheet.score(Usage.from_body(usage), ttft_ms, self.cost, learn=bool(usage))


def submitted_text(messages: list[dict[str, Any]], context: tuple[tuple[str, str], ...]) -> str:
    """The last user message's text; what comes before it must be the session's context."""
    if not messages:
        raise InvalidRequest("messages must end with the user's message", param="messages")
    *before, last = messages
    if last.get("role") != "user" or not isinstance(last.get("content"), str):
        raise InvalidRequest(
            "with X-Session-Id the last message must be the user's, as a string",
            param="messages",
        )
    given = tuple((str(m.get("role")), m.get("content")) for m in before)
    if given and given != context:
        raise InvalidRequest(
            "with X-Session-Id, messages are the user's message alone or after exactly the "
            "session's context (its system prompt and history)",
            param="messages",
            code="context_mismatch",
        )
    return str(last["content"])
