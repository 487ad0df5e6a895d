"""A fast fake of vLLM's OpenAI server, for load tests of the orchestrator without an engine.

    python -m eval.fake_vllm --port P [--model NAME] [--block-size 32]

It answers what the orchestrator asks of vLLM (`GET /v1/models`, `GET /metrics`,
`POST /v1/completions`, streaming or not) at once, computes nothing, and records for every
completion request its arrival wall time (`time.time()`), its `X-Request-Id` header and its
body size. `GET /fake/requests` returns the records as JSON, `POST /fake/reset` clears them.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

MAX_MODEL_LEN = 8192
DEFAULT_MAX_TOKENS = 16
TOKEN_TEXT = " tok"


@dataclass(frozen=True)
class Record:
    """One `POST /v1/completions` as it arrived."""

    at: float  # time.time() on arrival, before the body is read
    request_id: str | None
    body_bytes: int
    prompt_tokens: int
    stream: bool


@dataclass
class FakeState:
    model: str
    block_size: int
    records: list[Record] = field(default_factory=list)


def prompt_length(prompt: Any) -> int:
    """Token ids count one each, text one per character; a batch counts its first prompt."""
    if isinstance(prompt, str):
        return len(prompt)
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        return prompt_length(prompt[0])
    return len(prompt) if isinstance(prompt, list) else 0


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def create_fake_app(model: str = "fake-model", block_size: int = 32) -> Starlette:
    state = FakeState(model, block_size)

    async def models(request: Request) -> Response:
        entry = {"id": state.model, "object": "model", "max_model_len": MAX_MODEL_LEN}
        return JSONResponse({"object": "list", "data": [entry]})

    async def metrics(request: Request) -> Response:
        text = (
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
            "# TYPE vllm:cache_config_info gauge\n"
            f'vllm:cache_config_info{{block_size="{state.block_size}",engine="0"}} 1.0\n'
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            'vllm:num_requests_running{engine="0"} 0.0\n'
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def completions(request: Request) -> Response:
        arrived = time.time()
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": {"message": "body is not JSON"}}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": {"message": "body is not an object"}}, status_code=400)
        prompt_tokens = prompt_length(body.get("prompt"))
        stream = bool(body.get("stream"))
        request_id = request.headers.get("x-request-id")
        state.records.append(Record(arrived, request_id, len(raw), prompt_tokens, stream))
        completion_tokens = int(body.get("max_tokens") or DEFAULT_MAX_TOKENS)
        completion_id = f"cmpl-{request_id or uuid.uuid4().hex}"
        base = {
            "id": completion_id,
            "object": "text_completion",
            "created": int(arrived),
            "model": state.model,
        }
        if not stream:
            choice = {
                "index": 0,
                "text": TOKEN_TEXT * completion_tokens,
                "logprobs": None,
                "finish_reason": "length",
            }
            reply = {**base, "choices": [choice], "usage": usage(prompt_tokens, completion_tokens)}
            return JSONResponse(reply)
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        async def events() -> AsyncIterator[str]:
            for i in range(completion_tokens):
                last = i == completion_tokens - 1
                choice = {
                    "index": 0,
                    "text": TOKEN_TEXT,
                    "logprobs": None,
                    "finish_reason": "length" if last else None,
                }
                yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
            if include_usage:
                final = {**base, "choices": [], "usage": usage(prompt_tokens, completion_tokens)}
                yield f"data: {json.dumps(final)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def fake_requests(request: Request) -> Response:
        return JSONResponse([asdict(record) for record in state.records])

    async def fake_reset(request: Request) -> Response:
        state.records.clear()
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/fake/requests", fake_requests, methods=["GET"]),
            Route("/fake/reset", fake_reset, methods=["POST"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.fake_vllm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--block-size", type=int, default=32)
    args = parser.parse_args(argv)
    app = create_fake_app(args.model, args.block_size)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
