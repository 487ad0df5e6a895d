"""`POST /v1/chat/completions` with `X-Session-Id`: a session's final request over HTTP.

The request's last user message is submitted as the session's text: the session opens its
answer (`Session.final`, `core/answering/answer.py`) exactly as for a `submit` on the
WebSocket: the same token ids (so it hits every block the session's warm-ups left), attached
to the speculation that asked the same, streamed from vLLM and stopped by the context's stop
rule, and, for a text-to-SQL context, its query run. This module only formats the answer as
an OpenAI chat completion, streamed or not.

Its usage carries the request's scorecard (`core/warming/scorecard.py`) as an extension the
OpenAI SDKs keep (`completion.usage.model_extra["prefill_ahead"]`), and a text-to-SQL answer
the `done` frame's SQL fields there too (`sql`, and `columns`, `rows`, `truncated`,
`query_ms`, or `refused`): `usage["prefill_ahead"]` in a non-streamed body and in the
streamed answer's usage chunk. A non-streamed answer also has the scorecard as `X-Prefill-*`
headers (`X-Prefill-Hit-Tokens`, ...; a null figure is left out).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from orchestrator.core.answering.answer import Answer, Ended
from orchestrator.core.answering.final_request import SSE_DONE, final_priority, sse_event
from orchestrator.core.frames import Scorecard
from orchestrator.core.services import LiveSession
from orchestrator.errors import InvalidRequest, ServiceError
from orchestrator.web.chat_format import chat_delta, chat_head, chat_message
from orchestrator.web.services import Services

USAGE_EXTENSION = "prefill_ahead"
PASSED_ON = frozenset({
    "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "n",
    "stream", "stream_options", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "user", "priority",
})  # fmt: skip
STREAMING = frozenset({"stream", "stream_options"})  # a session's final always streams


def client_fields(body: dict[str, Any], priority: int) -> dict[str, Any]:
    """What a chat request for a session changes in the session's final body: its sampling
    fields (the model, the prompt and the salt stay the session's; one answer, streamed)."""
    unknown = sorted(set(body) - PASSED_ON - {"messages", "max_completion_tokens"})
    if unknown:
        raise InvalidRequest(
            f"not supported with X-Session-Id: {', '.join(unknown)}", param=unknown[0]
        )
    if body.get("n") not in (None, 1):
        raise InvalidRequest("with X-Session-Id a request has one answer: n is 1", param="n")
    fields = {key: body[key] for key in PASSED_ON - STREAMING - {"model", "n"} if key in body}
    fields["max_tokens"] = body.get("max_completion_tokens", body.get("max_tokens"))
    fields["priority"] = final_priority(body.get("priority"), priority)
    return {key: value for key, value in fields.items() if value is not None}


def answer_usage(ended: Ended) -> dict[str, Any]:
    """The usage of a session's answer, with the scorecard (and the context's fields)."""
    usage = ended.usage
    extension = ended.scorecard.model_dump(mode="json") | ended.context_fields
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        USAGE_EXTENSION: extension,
    }


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
    stack = contextlib.AsyncExitStack()
    final = session.chat_final(messages, request_id, received, fields)
    answer = await stack.enter_async_context(final)
    head = chat_head("chatcmpl-" + request_id, answer.final.started.facts.model, "")
    if body.get("stream"):
        events = streamed(answer, head | {"object": "chat.completion.chunk"})
        return StreamingResponse(closed_after(stack, events), media_type="text/event-stream")
    async with stack:
        async for _ in answer.pieces():
            pass
        ended = await answer.end()
    whole = head | {"object": "chat.completion"}
    completion = chat_message(whole, ended.text, ended.finish_reason, answer_usage(ended))
    return JSONResponse(completion, headers=scorecard_headers(ended.scorecard))


async def streamed(answer: Answer, head: dict[str, Any]) -> AsyncIterator[bytes]:
    """The answer as chat completion chunks, its end, its usage chunk, then `[DONE]`; a
    failure ends it with an event in the OpenAI envelope."""
    try:
        async for text in answer.pieces():
            delta = {"content": text} if len(answer.output) > 1 else {"role": "assistant"}
            yield sse_event(chat_delta(head, delta | {"content": text}, None))
        ended = await answer.end()
    except ServiceError as error:
        yield sse_event(error.envelope())
        yield SSE_DONE
        return
    yield sse_event(chat_delta(head, {}, ended.finish_reason))
    yield sse_event(head | {"choices": [], "usage": answer_usage(ended)})
    yield SSE_DONE


async def closed_after(
    stack: contextlib.AsyncExitStack, events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """`events`, then the answer closed: when they end, or the client goes away."""
    async with stack:
        async for event in events:
            yield event
