"""A session's final request, however it is submitted: a `submit` frame on the WebSocket or a
chat completion over HTTP with `X-Session-Id`; its answer is `answer.Answer`, the same on
both channels. Both ask `Session.final` for the same thing: the submit-ready
prompt, token for token, in the body `final_body` builds (so it hits every block the
session's warm-ups left, and a speculation on that text can be attached to), the scorecard
sheet fixed before the warm-ups were settled, and what speculation did for the question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.answering.final_request import FinalReply, FinalRequest
from orchestrator.core.answering.speculation import Outcome, Speculation
from orchestrator.core.answering.stopping import stop_fields
from orchestrator.core.engine.prefill_cost import PrefillCost
from orchestrator.core.engine.vllm_client import Usage
from orchestrator.core.frames import Scorecard
from orchestrator.core.started import Started
from orchestrator.core.warming.dispatch import REPORT_FULL_CHAINS
from orchestrator.core.warming.scorecard import ScoreSheet
from orchestrator.core.warming.warmer import WarmStats
from orchestrator.errors import InvalidRequest
from orchestrator.settings import Settings

STREAM_FIELDS = ("stream", "stream_options")


def final_body(started: Started, tokens: list[int], settings: Settings) -> dict[str, Any]:
    """The `/v1/completions` body of a session's final request for the prompt `tokens`, as
    a submit sends it (streaming aside): a speculation asks exactly this."""
    chains = {"vllm_xargs": REPORT_FULL_CHAINS} if settings.kv_events_url else {}
    chains |= stop_fields(started.context)  # a context's stop sequences (a chat has none)
    return chains | {
        "model": started.facts.model,
        "prompt": tokens,
        "max_tokens": started.params.max_tokens or settings.max_tokens,
        "temperature": started.params.temperature,
        "priority": settings.final_priority,
        "cache_salt": started.salt,
    }


def without_streaming(body: dict[str, Any]) -> dict[str, Any]:
    """What a body asks of the model: the same answer, streamed or not."""
    return {key: value for key, value in body.items() if key not in STREAM_FIELDS}


@dataclass
class SessionFinal:
    """One final request of a session, from `Session.final`'s entry to its `close`."""

    request: FinalRequest
    started: Started  # what the session was about when it was submitted
    sheet: ScoreSheet  # fixed before the session's warm-ups were settled
    stats: WarmStats  # the question's warm-ups
    speculation: Speculation | None  # the speculation it attaches to, if any
    outcome: Outcome = field(default_factory=Outcome)  # what speculation did for it
    closed: bool = False

    @property
    def tokens(self) -> list[int]:
        return list(self.request.body["prompt"])

    def close(self, answered: bool) -> None:
        """The final is over for the session's warm-ups: its blocks are cached if it was
        answered, the warm-ups go on, and the next question's figures start (once)."""
        if self.closed:
            return
        self.closed = True
        warmer = self.started.warmer
        if answered:
            self.started.planner.assume_cached(self.tokens)
        warmer.release()
        if warmer.stats is self.stats:
            warmer.stats = WarmStats()

    def scorecard(self, reply: FinalReply | None, cost: PrefillCost) -> Scorecard:
        """The final's scorecard once answered (`reply` None: it never went out). Only a
        final that computed its own prompt, with vLLM's usage, teaches the cost fit."""
        usage = reply.usage if reply is not None else None
        ttft_ms = reply.ttft_ms if reply is not None else None
        learn = usage is not None and self.speculation is None
        known = usage if usage is not None else Usage(len(self.tokens), 0, 0)
        card = self.sheet.score(known, ttft_ms, cost, learn=learn)
        return card.model_copy(
            update={
                "speculative": self.outcome.speculative,
                "speculation_wasted_tokens": self.outcome.wasted_tokens,
            }
        )


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
