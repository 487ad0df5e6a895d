"""vLLM's own input checks, for the strict mode of the fake vLLM (`testkit/fake_vllm.py`).

Each check raises `Rejected` with the status and message vLLM would answer, so that, against
a strict fake, every 5xx the orchestrator sends is its own doing, never the fake's.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any


class Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise Rejected(400, "the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise Rejected(400, "the body is not a JSON object")
    return parsed


def check_model(body: dict[str, Any], model: str) -> None:
    asked = body.get("model")
    if asked is not None and asked != model:
        raise Rejected(404, f"The model `{asked}` does not exist.")


def check_completion(
    body: dict[str, Any],
    *,
    model: str,
    vocab_size: int,
    max_model_len: int,
    refused_salts: Collection[str],
) -> None:
    """What vLLM refuses in a `POST /v1/completions` (and the warm-ups a test refuses)."""
    check_model(body, model)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        length = len(prompt)
    elif isinstance(prompt, list) and prompt and all(is_int(t) for t in prompt):
        bad = [t for t in prompt if not 0 <= t < vocab_size]
        if bad:
            raise Rejected(400, f"Token id {bad[0]} is out of vocabulary")
        length = len(prompt)
    else:
        raise Rejected(400, "prompt must be a string or a non-empty list of token ids")
    max_tokens = body.get("max_tokens", 16)
    if max_tokens is not None and (not is_int(max_tokens) or max_tokens < 1):
        raise Rejected(400, "max_tokens must be a positive integer")
    if length + (max_tokens or 0) > max_model_len:
        raise Rejected(400, f"This model's maximum context length is {max_model_len}")
    for name, kinds in (("stream", bool), ("temperature", (int, float)), ("priority", int)):
        if body.get(name) is not None and not isinstance(body[name], kinds):
            raise Rejected(400, f"{name} has the wrong type")
    if body.get("n", 1) != 1:
        raise Rejected(400, "this fake answers n=1 only")
    if max_tokens == 1 and body.get("cache_salt") in refused_salts:
        raise Rejected(400, "this warm-up is refused (the test asked for it)")


def messages_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise Rejected(400, "messages must be a non-empty list")
    text = ""
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise Rejected(400, "each message needs a string content")
        if message.get("role") not in ("system", "user", "assistant"):
            raise Rejected(400, f"unknown role {message.get('role')!r}")
        text += f"<{message['role']}>{message['content']}"
    return text


def tokenize(
    body: dict[str, Any], *, model: str, vocab_size: int, max_model_len: int
) -> dict[str, Any]:
    """`POST /tokenize`: one token per character of the prompt (or of the rendered messages)."""
    check_model(body, model)
    if isinstance(body.get("prompt"), str) and "messages" not in body:
        text = body["prompt"]
    elif "messages" in body and "prompt" not in body:
        text = messages_text(body["messages"])
    else:
        raise Rejected(400, "give a string prompt or messages")
    tokens = [ord(char) % vocab_size for char in text]
    return {"count": len(tokens), "max_model_len": max_model_len, "tokens": tokens}


def chat(body: dict[str, Any], *, model: str, reply: Sequence[str]) -> dict[str, Any]:
    """`POST /v1/chat/completions`, not streamed: `reply` as the assistant's message."""
    check_model(body, model)
    prompt = len(messages_text(body.get("messages")))
    if body.get("stream"):
        raise Rejected(400, "this fake does not stream chats")
    message = {"role": "assistant", "content": "".join(reply)}
    return {
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": len(reply)},
    }
