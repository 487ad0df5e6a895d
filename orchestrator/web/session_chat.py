"""`POST /v1/chat/completions` with `X-Session-Id`: a session's final request over HTTP.

The request's last user message is submitted as the session's text: its prompt is built by
the session (context, openings, chat template: the same token ids a `submit` sends), so it
hits every block the session's warm-ups left, and it is sent to vLLM's `/v1/completions` as
token ids, the way every final goes (`core/answering/final_request.py`). The answer comes back as an
ordinary OpenAI chat completion, streamed or not. When the session speculated on that very
text and the request changes none of the session's generation fields, the answer attaches to
the speculation as a `submit` would (`core/answering/speculation.py`).

Its usage carries the request's scorecard (`core/warming/scorecard.py`) as an extension the OpenAI
SDKs keep (`completion.usage.model_extra["prefill_ahead"]`): `usage["prefill_ahead"]` in a
non-streamed body and in the streamed answer's usage chunk. A non-streamed answer also has it
as `X-Prefill-*` headers (`X-Prefill-Hit-Tokens`, ...; a null figure is left out), and its
`ttft_ms` is null: the first token is not seen apart from the last.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from orchestrator.core.answering.final_request import FinalReply, final_priority
from orchestrator.core.answering.session_final import SessionFinal
from orchestrator.core.engine.prefill_cost import PrefillCost
from orchestrator.core.frames import Scorecard
from orchestrator.core.services import LiveSession
from orchestrator.errors import InvalidRequest
from orchestrator.web.chat_format import chat_completion, chat_events
from orchestrator.web.services import Services

USAGE_EXTENSION = "prefill_ahead"
PASSED_ON = frozenset({
    "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "n",
    "stream", "stream_options", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "user", "priority",
})  # fmt: skip


def client_fields(body: dict[str, Any], priority: int) -> dict[str, Any]:
    """What a chat request for a session changes in the session's final body: its sampling
    fields (the model, the prompt and the salt stay the session's)."""
    unknown = sorted(set(body) - PASSED_ON - {"messages", "max_completion_tokens"})
    if unknown:
        raise InvalidRequest(
            f"not supported with X-Session-Id: {', '.join(unknown)}", param=unknown[0]
        )
    fields = {key: value for key, value in body.items() if key in PASSED_ON - {"model"}}
    fields["max_tokens"] = body.get("max_completion_tokens", body.get("max_tokens"))
    fields["priority"] = final_priority(body.get("priority"), priority)
    if body.get("stream"):
        fields["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return {key: value for key, value in fields.items() if value is not None}


def with_scorecard(usage: dict[str, Any], card: Scorecard) -> dict[str, Any]:
    return {**usage, USAGE_EXTENSION: card.model_dump(mode="json")}


def scorecard_headers(card: Scorecard) -> dict[str, str]:
    """`hit_tokens` as `X-Prefill-Hit-Tokens`, and so on, each value as in JSON (`true`, `12`);
    null figures left out."""
    figures = card.model_dump(mode="json").items()
    return {
        "X-Prefill-" + "-".join(part.capitalize() for part in name.split("_")): json.dumps(value)
        for name, value in figures
        if value is not None
    }


async def session_chat(
    services: Services, session: LiveSession, body: dict[str, Any], request_id: str
) -> Response:
    received = time.perf_counter()  # the request's arrival: TTFT counts from here
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest("messages must be a list of chat messages", param="messages")
    fields = client_fields(body, services.settings.final_priority)
    final = session.open_chat_final(messages, request_id, received, fields)
    try:
        reply = await services.finals.open(final.request, final.speculation)
    except BaseException:
        session.close_final(final, False)
        raise
    opening = final.started.prompt.frame.answer_opening
    if final.request.streams:
        events = scored_events(reply, final, session, services.prefill_cost, opening)
        return StreamingResponse(reply.closing(events), media_type="text/event-stream")
    async with reply:
        try:
            completion = await reply.json()
        finally:
            session.close_final(final, reply.usage is not None)
    answer = chat_completion(completion, opening)
    if not isinstance(answer.get("usage"), dict):
        return JSONResponse(answer)
    card = final.scorecard(reply, services.prefill_cost)  # no TTFT: not streamed
    answer["usage"] = with_scorecard(answer["usage"], card)
    return JSONResponse(answer, headers=scorecard_headers(card))


async def scored_events(
    reply: FinalReply,
    final: SessionFinal,
    session: LiveSession,
    cost: PrefillCost,
    opening: str,
) -> AsyncIterator[bytes]:
    """The streamed chat answer, its usage chunk carrying the scorecard."""

    def scored(usage: dict[str, Any]) -> dict[str, Any]:
        return with_scorecard(usage, final.scorecard(reply, cost))

    try:
        async for event in chat_events(reply, opening, scored):
            yield event
    finally:
        session.close_final(final, reply.ttft_ms is not None)
