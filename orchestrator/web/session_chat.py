"""`POST /v1/chat/completions` with `X-Session-Id`: a session's final request over HTTP.

The request's last user message is submitted as the session's text: its prompt is built by
the session (context, openings, chat template: the same token ids a `submit` sends), so it
hits every block the session's warm-ups left, and it is sent to vLLM's `/v1/completions` as
token ids. The answer comes back as an ordinary OpenAI chat completion, streamed or not.

Its usage carries the request's scorecard (`core/scorecard.py`) as an extension the OpenAI
SDKs keep (`completion.usage.model_extra["prefill_ahead"]`): `usage["prefill_ahead"]` in a
non-streamed body and in the streamed answer's usage chunk. A non-streamed answer also has it
as `X-Prefill-*` headers (`X-Prefill-Hit-Tokens`, ...; a null figure is left out), and its
`ttft_ms` is null: the first token is not seen apart from the last.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse

from orchestrator.core.frames import Scorecard
from orchestrator.core.http_final import HttpFinal
from orchestrator.core.metrics import Metrics
from orchestrator.core.services import LiveSession
from orchestrator.core.vllm_client import Usage
from orchestrator.core.warm_scheduler import FinalTicket
from orchestrator.errors import InvalidRequest, RateLimited
from orchestrator.web.services import Services
from orchestrator.web.upstream_errors import dropped_stream_event, normalise_error

USAGE_EXTENSION = "prefill_ahead"
PASSED_ON = frozenset({
    "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "n",
    "stream", "stream_options", "presence_penalty", "frequency_penalty", "repetition_penalty",
    "user", "priority",
})  # fmt: skip


@dataclass
class FinalTally:
    """The metrics of one session's final over HTTP: TTFT (streamed only) and usage."""

    metrics: Metrics
    received: float
    ttft_ms: float | None = None
    usage: Usage | None = None

    def saw(self, chunk: dict[str, Any]) -> None:
        if self.ttft_ms is None and any(c.get("text") for c in chunk.get("choices", [])):
            self.ttft_ms = (time.perf_counter() - self.received) * 1000
        if chunk.get("usage"):
            self.usage = Usage.from_body(chunk["usage"])

    def ended(self) -> None:
        self.metrics.final_answered("http", self.ttft_ms, self.usage)


def completion_body(final: HttpFinal, body: dict[str, Any], priority: int) -> dict[str, Any]:
    """The `/v1/completions` body of a chat request for a session."""
    unknown = sorted(set(body) - PASSED_ON - {"messages", "max_completion_tokens"})
    if unknown:
        raise InvalidRequest(
            f"not supported with X-Session-Id: {', '.join(unknown)}", param=unknown[0]
        )
    passed = {key: value for key, value in body.items() if key in PASSED_ON}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    asked = body.get("priority", priority)
    upstream = {
        **passed,
        "model": final.model,
        "prompt": final.tokens,
        "max_tokens": max_tokens or final.params.max_tokens,
        "temperature": body.get("temperature", final.params.temperature),
        "priority": max(asked, priority) if isinstance(asked, int) else priority,
        "cache_salt": final.salt,
    }
    if body.get("stream"):
        upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return {key: value for key, value in upstream.items() if value is not None}


def chat_completion(completion: dict[str, Any], opening: str) -> dict[str, Any]:
    """A `/v1/completions` answer as a chat completion (the answer's opening put back)."""
    choices = [
        {
            "index": choice.get("index", 0),
            "message": {"role": "assistant", "content": opening + (choice.get("text") or "")},
            "finish_reason": choice.get("finish_reason"),
            "logprobs": chat_logprobs(choice.get("logprobs")),
        }
        for choice in completion.get("choices", [])
    ]
    return {
        "id": "chat" + str(completion.get("id", "cmpl")),
        "object": "chat.completion",
        "created": completion.get("created", int(time.time())),
        "model": completion.get("model"),
        "choices": choices,
        "usage": completion.get("usage"),
    }


def chat_logprobs(logprobs: dict[str, Any] | None) -> dict[str, Any] | None:
    """A completion's log-probabilities (`tokens`, `token_logprobs`, `top_logprobs`) in the
    chat completion's shape: `{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}`."""
    if not isinstance(logprobs, dict):
        return None
    tokens = logprobs.get("tokens") or []
    chosen = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    content = []
    for i, token in enumerate(tokens):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        content.append({
            **token_logprob(str(token), chosen[i] if i < len(chosen) else None),
            "top_logprobs": [token_logprob(str(t), lp) for t, lp in top.items()],
        })  # fmt: skip
    return {"content": content}


def token_logprob(token: str, logprob: float | None) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def chat_chunk(chunk: dict[str, Any], opening: str, begun: set[int]) -> dict[str, Any]:
    """One streamed completion chunk as a chat completion chunk."""
    choices = []
    for choice in chunk.get("choices", []):
        index = choice.get("index", 0)
        delta: dict[str, Any] = {"content": choice.get("text") or ""}
        if index not in begun:
            begun.add(index)
            delta = {"role": "assistant", "content": opening + delta["content"]}
        converted_choice = {
            "index": index, "delta": delta, "finish_reason": choice.get("finish_reason")
        }  # fmt: skip
        if choice.get("logprobs"):
            converted_choice["logprobs"] = chat_logprobs(choice["logprobs"])
        choices.append(converted_choice)
    converted = {
        "id": "chat" + str(chunk.get("id", "cmpl")),
        "object": "chat.completion.chunk",
        "created": chunk.get("created", int(time.time())),
        "model": chunk.get("model"),
        "choices": choices,
    }
    if chunk.get("usage"):
        converted["usage"] = chunk["usage"]
    return converted


def with_scorecard(usage: dict[str, Any], card: Scorecard) -> dict[str, Any]:
    return {**usage, USAGE_EXTENSION: card.model_dump(mode="json")}


def scorecard_headers(card: Scorecard) -> dict[str, str]:
    """`hit_tokens` as `X-Prefill-Hit-Tokens`, and so on; null figures left out."""
    figures = card.model_dump(mode="json").items()
    return {
        "X-Prefill-" + "-".join(part.capitalize() for part in name.split("_")): str(value)
        for name, value in figures
        if value is not None
    }


def scored_answer(completion: dict[str, Any], final: HttpFinal) -> JSONResponse:
    """A non-streamed answer as a chat completion, its scorecard in its usage and headers."""
    answer = chat_completion(completion, final.answer_opening)
    if not isinstance(answer.get("usage"), dict):
        return JSONResponse(answer)
    card = final.scorecard(answer["usage"], None)
    answer["usage"] = with_scorecard(answer["usage"], card)
    return JSONResponse(answer, headers=scorecard_headers(card))


async def session_chat(
    services: Services,
    session: LiveSession,
    body: dict[str, Any],
    headers: dict[str, str],
) -> Response:
    received = time.perf_counter()  # the request's arrival: TTFT counts from here
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest("messages must be a list of chat messages", param="messages")
    final = session.open_http_final(messages)
    tally = FinalTally(services.metrics, received)
    try:
        ticket = services.dispatcher.scheduler.final_started(session.id, session.tenant)
    except RateLimited:
        session.close_http_final(final)
        raise
    try:
        payload = completion_body(final, body, services.settings.final_priority)
        upstream = services.http.build_request(
            "POST", "/v1/completions", json=payload, headers=headers
        )
        response = await services.vllm.send(upstream, stream=True)
    except BaseException:
        ticket.close()
        session.close_http_final(final)
        raise
    if response.status_code >= 400 or not payload.get("stream"):
        ticket.close()
        try:
            content = await response.aread()
        finally:
            await response.aclose()
            session.close_http_final(final)
        if response.status_code >= 400:
            services.metrics.upstream_status(response.status_code)
            envelope = normalise_error(response.status_code, content)
            return JSONResponse(envelope, response.status_code)
        completion = json.loads(content)
        tally.usage = Usage.from_body(completion.get("usage"))
        tally.ended()
        return scored_answer(completion, final)
    events = chat_events(response, final, session, ticket, tally)
    return StreamingResponse(events, media_type="text/event-stream")


async def chat_events(
    response: httpx.Response,
    final: HttpFinal,
    session: LiveSession,
    ticket: FinalTicket,
    tally: FinalTally,
) -> AsyncIterator[bytes]:
    def seen(chunk: dict[str, Any], converted: dict[str, Any]) -> dict[str, Any]:
        tally.saw(chunk)
        if isinstance(converted.get("usage"), dict):
            card = final.scorecard(converted["usage"], tally.ttft_ms)
            converted["usage"] = with_scorecard(converted["usage"], card)
        return converted

    try:
        async with contextlib.aclosing(
            chat_sse(response, final.answer_opening, ticket, seen)
        ) as events:
            async for event in events:
                yield event
    finally:
        tally.ended()
        session.close_http_final(final)


async def chat_sse(
    response: httpx.Response,
    opening: str,
    ticket: FinalTicket,
    seen: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
) -> AsyncGenerator[bytes, None]:
    """vLLM's `/v1/completions` stream as chat completion chunk events; `seen(chunk,
    converted)` sees each upstream chunk and may change its converted form. Closing it closes
    the upstream stream."""
    begun: set[int] = set()
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            ticket.first_token()
            data = line[5:].strip()
            if data == "[DONE]":
                yield b"data: [DONE]\n\n"
                continue
            chunk = json.loads(data)
            if "error" in chunk:  # as the passthrough does: in the OpenAI envelope
                yield f"data: {json.dumps(normalise_error(500, data.encode()))}\n\n".encode()
                continue
            converted = seen(chunk, chat_chunk(chunk, opening, begun))
            yield f"data: {json.dumps(converted)}\n\n".encode()
    except (httpx.TransportError, httpx.TimeoutException) as error:
        yield dropped_stream_event(error)
    finally:
        ticket.close()
        await response.aclose()
