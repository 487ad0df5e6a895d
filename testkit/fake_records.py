"""What the fake vLLM (`testkit/fake_vllm.py`) keeps of each completion request it receives, and
the measures it takes of a request body (prompt length, whether a stream asks for usage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Recorded:
    """One POST /v1/completions the fake received, and the usage it answered with."""

    body: dict[str, Any]  # empty in the fast mode
    at: float  # time.monotonic() once the body is read
    wall: float  # time.time() on arrival, before the body is read
    request_id: str | None
    body_bytes: int
    prompt_tokens: int
    stream: bool
    max_tokens: Any
    include_usage: bool  # stream_options.include_usage (the fast mode sends usage only then)
    route: str | None = None  # the X-Session-ID header: the routing key a router hashes on
    usage: dict[str, Any] | None = None
    disconnected: bool = False  # the client went away before the end (a held warm-up, a stream)

    @property
    def prompt(self) -> list[int]:
        prompt: list[int] = self.body["prompt"]
        return prompt

    @property
    def is_warmup(self) -> bool:
        return not self.stream and self.max_tokens == 1

    def summary(self) -> dict[str, Any]:
        """What `GET /fake/requests` answers for it."""
        return {
            "at": self.wall,
            "request_id": self.request_id,
            "body_bytes": self.body_bytes,
            "prompt_tokens": self.prompt_tokens,
            "stream": self.stream,
        }


def prompt_length(prompt: Any) -> int:
    """Token ids count one each, text one per character; a batch counts its first prompt."""
    if isinstance(prompt, str):
        return len(prompt)
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        return prompt_length(prompt[0])
    return len(prompt) if isinstance(prompt, list) else 0


def include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options") or {}
    return isinstance(options, dict) and bool(options.get("include_usage"))
