"""vLLM's `/v1/completions` answers in the shape of OpenAI chat completions.

A session's chat completion (`session_chat.py`) and a named state's (`state_completions.py`)
are sent to vLLM as token ids, so their answers come back as completions: these functions
give them the chat shape, whole or streamed, log-probabilities included (a session's answer,
one choice of text, is shaped by `chat_delta` and `chat_message`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Usage = dict[str, Any]
Chunk = dict[str, Any]


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


def chat_events(opening: str) -> Callable[[Chunk], Chunk]:
    """`FinalReply.events`' converter: each completion chunk as a chat completion chunk."""
    begun: set[int] = set()
    return lambda chunk: chat_chunk(chunk, opening, begun)


def chat_head(chat_id: str, model: str | None, kind: str) -> dict[str, Any]:
    return {"id": chat_id, "object": kind, "created": int(time.time()), "model": model}


def chat_delta(head: dict[str, Any], delta: dict[str, Any], finish: str | None) -> Chunk:
    """One streamed chat chunk of the one choice."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return head | {"choices": [choice]}


def chat_message(head: dict[str, Any], content: str, finish: str | None, usage: Usage) -> Chunk:
    """A whole chat completion of the one choice."""
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    return head | {"choices": [choice], "usage": usage}
