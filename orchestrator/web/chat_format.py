"""vLLM's `/v1/completions` answers in the shape of OpenAI chat completions.

A session's chat completion (`session_chat.py`) and a named state's (`state_completions.py`)
are sent to vLLM as token ids, so their answers come back as completions: these functions
give them the chat shape, whole or streamed, log-probabilities included.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from orchestrator.core.answering.final_request import FinalReply
from orchestrator.errors import ServiceError

Usage = dict[str, Any]


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


async def chat_events(
    reply: FinalReply, opening: str, on_usage: Callable[[Usage], Usage] = lambda usage: usage
) -> AsyncIterator[bytes]:
    """The reply's stream as chat completion chunk events, then `[DONE]`; `on_usage` may add
    to the usage chunk. A failure mid-stream ends it with an OpenAI-shaped error event."""
    begun: set[int] = set()
    try:
        async for chunk in reply.chunks():
            converted = chat_chunk(chunk, opening, begun)
            if isinstance(converted.get("usage"), dict):
                converted["usage"] = on_usage(converted["usage"])
            yield f"data: {json.dumps(converted)}\n\n".encode()
    except ServiceError as error:
        yield f"data: {json.dumps(error.envelope())}\n\n".encode()
    yield b"data: [DONE]\n\n"
