"""A fake of vLLM's OpenAI server, for the orchestrator's tests and its load benchmark.

    python -m testkit.fake_vllm --port P [--model NAME] [--block-size 32]

`FakeVLLM` is a raw-ASGI app that answers what the orchestrator asks of vLLM (`GET /v1/models`,
`GET /metrics`, `POST /v1/completions`, streaming or not) and records every completion request
it receives. `GET /fake/requests` returns the records as JSON (arrival wall time `at`,
`request_id` from the `X-Request-Id` header, `body_bytes`, `prompt_tokens`, `stream`);
`POST /fake/reset` clears them.
The records are `testkit/fake_records.py`'s; the raw-ASGI plumbing is `testkit/fake_asgi.py`.

Switches (constructor arguments; a test may also turn them between requests):

- `fast`: compute nothing (no prefix-cache simulation, `cached_tokens` 0), answer `max_tokens`
  tokens of `" tok"`, and keep only the summary of each request, not its body: the mode the
  command line serves, for the load benchmark.
- otherwise the fake simulates automatic prefix caching (per `cache_salt`, full blocks only, the
  last prompt token never a hit), so the `cached_tokens` it reports are what vLLM would report,
  and keeps every request body (`completions`, `warmups`, `finals`).
- `strict`: vLLM's own input checks (`testkit/fake_checks.py`): a 4xx where vLLM would answer one
  (unknown model, bad prompt, token ids out of the vocabulary, a prompt over `max_model_len`,
  bad chat messages, warm-ups under `refused_salts`), and `/tokenize` and
  `/v1/chat/completions` served too.
- `hold_warmups()` / `release_warmups()`: warm-ups (`max_tokens=1`, not streamed) wait, and
  one whose client leaves meanwhile is recorded as `disconnected`, as vLLM would abort it;
  `hold_answers()` / `release_answers()` the same for other requests that are not streamed
  (a non-streamed final request, generating its whole answer).
- `warm_status`, `final_status`: answer warm-ups, or streamed requests, with that error status.
- `stream_hang`: send a stream's first token, then wait for the client to go away.
- `hold_streams()` / `release_streams()`: streamed requests wait before their first token
  (one whose client leaves meanwhile is recorded as `disconnected`).

A streamed answer is `reply`, one token a chunk, its token ids `REPLY_IDS` (in each chunk when
the body asks `return_token_ids`); it stops at `max_tokens` (finish `length`) and otherwise
ends with `stop`. A prompt that ends with the first k ids of the reply is answered with the
rest of it, as a model would go on from its own answer: a speculation stopped after k tokens
and continued with its ids appended gives the very answer of a cold request.
- `token_delay_s`: wait this long before each streamed token after the first (a slow engine).

A streamed reply honours the request's `stop` strings as vLLM does: it ends where one first
appears (kept with `include_stop_str_in_output`), `finish_reason` "stop" and `stop_reason` the
string; a reply that runs out ends with "stop" and `stop_reason` null (the end of text).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from testkit import fake_checks
from testkit.fake_asgi import (
    answer,
    answer_json,
    client_gone,
    client_left,
    lifespan,
    read_body,
    send_event,
)
from testkit.fake_checks import Rejected
from testkit.fake_records import Recorded, include_usage, prompt_length

DEFAULT_MAX_TOKENS = 16
REPLY_ID_BASE = 40_000  # the token id of the reply's first token; the next ones follow
TOKEN_TEXT = " tok"  # each token the fast mode answers
SWITCHES = ("url", "fast", "strict")  # what `reset()` leaves as it is


@dataclass
class FakeVLLM:
    """A raw-ASGI stand-in for vLLM's OpenAI server; the module's docstring lists its switches."""

    model: str = "fake-model"
    max_model_len: int = 8192
    block_size: int = 32  # what /metrics says and what the cache simulation uses
    reply: tuple[str, ...] = ("SELECT", " name", " FROM", " customers", ";")
    fast: bool = False
    strict: bool = False
    vocab_size: int = 49152  # strict: token ids at or over it are refused
    refused_salts: set[str] = field(default_factory=set)  # strict: warm-ups under these get a 400
    warm_status: int = 200
    final_status: int = 200
    stream_hang: bool = False
    token_delay_s: float = 0.0
    url: str = ""
    completions: list[Recorded] = field(default_factory=list)
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (path, status, why)
    gets: list[str] = field(default_factory=list)
    warm_in_flight: int = 0
    max_warm_in_flight: int = 0
    streams_open: int = 0
    _release: asyncio.Event | None = None
    _answers_release: asyncio.Event | None = None
    _streams_release: asyncio.Event | None = None
    _cache: set[tuple[str, tuple[int, ...]]] = field(default_factory=set)

    # -- what it saw --
    @property
    def warmups(self) -> list[Recorded]:
        return [r for r in self.completions if r.is_warmup]

    @property
    def finals(self) -> list[Recorded]:
        return [r for r in self.completions if not r.is_warmup]

    @property
    def stream_disconnects(self) -> int:
        return sum(r.disconnected for r in self.finals)

    # -- knobs --
    def reset(self) -> None:
        """Back to the defaults and an empty record (one fake serves many tests); the mode
        switches and the URL stay."""
        for spec in fields(self):
            if spec.name in SWITCHES:
                continue
            if spec.default_factory is not MISSING:
                setattr(self, spec.name, spec.default_factory())
            else:
                setattr(self, spec.name, spec.default)

    def hold_warmups(self) -> None:
        self._release = asyncio.Event()

    def release_warmups(self) -> None:
        if self._release is not None:
            self._release.set()
        self._release = None

    def hold_answers(self) -> None:
        self._answers_release = asyncio.Event()

    def release_answers(self) -> None:
        if self._answers_release is not None:
            self._answers_release.set()
        self._answers_release = None

    def hold_streams(self) -> None:
        self._streams_release = asyncio.Event()

    def release_streams(self) -> None:
        if self._streams_release is not None:
            self._streams_release.set()
        self._streams_release = None

    # -- the prefix-cache simulation --
    def _cached_tokens(self, salt: str, prompt: list[int]) -> int:
        b, hits = self.block_size, 0
        while (hits + 1) * b <= len(prompt) - 1 and (salt, tuple(prompt[: (hits + 1) * b])) in (
            self._cache
        ):
            hits += 1
        return hits * b

    def _usage(self, body: dict[str, Any], prompt_tokens: int, completion: int) -> dict[str, Any]:
        cached = 0
        if not self.fast:
            salt, prompt = str(body.get("cache_salt") or ""), list(body["prompt"])
            cached = self._cached_tokens(salt, prompt)
            for end in range(self.block_size, len(prompt) + 1, self.block_size):
                self._cache.add((salt, tuple(prompt[:end])))
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def _tokens(self, record: Recorded) -> tuple[str, ...]:
        """The tokens it answers: `max_tokens` of them in the fast mode, else `reply` streamed
        (from where the prompt left it, at most `max_tokens`) and one token not streamed."""
        if self.fast:
            return (TOKEN_TEXT,) * int(record.max_tokens or DEFAULT_MAX_TOKENS)
        if not record.stream:
            return ("x",)
        start = self._reply_done(record.prompt)
        return self.reply[start : start + int(record.max_tokens or len(self.reply))]

    def _reply_done(self, prompt: list[int]) -> int:
        """How much of the reply the prompt already ends with (its ids, from the first)."""
        ids = [REPLY_ID_BASE + i for i in range(len(self.reply))]
        for done in range(min(len(ids), len(prompt)), 0, -1):
            if prompt[-done:] == ids[:done]:
                return done
        return 0

    def _base(self, record: Recorded) -> dict[str, Any]:
        """The fields every answer to `record` (or every event of its stream) starts with."""
        if self.fast:
            completion_id = f"cmpl-{record.request_id or uuid.uuid4().hex}"
            return {
                "id": completion_id,
                "object": "text_completion",
                "created": int(record.wall),
                "model": self.model,
            }
        if record.stream:
            return {"object": "text_completion"}
        return {"object": "text_completion", "model": self.model}

    def _choice(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "finish_reason": finish_reason}
        return {**choice, "logprobs": None} if self.fast else choice

    # -- ASGI --
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        assert scope["type"] == "http"
        arrived = time.time()
        raw = await read_body(receive)
        method, path = scope["method"], scope["path"]
        try:
            if method == "POST" and path == "/v1/completions":
                body = fake_checks.json_object(raw)
                if self.strict:
                    fake_checks.check_completion(
                        body,
                        model=self.model,
                        vocab_size=self.vocab_size,
                        max_model_len=self.max_model_len,
                        refused_salts=self.refused_salts,
                    )
                record = self._record(body, raw, scope, arrived)
                if record.stream:
                    await self._stream(record, receive, send)
                else:
                    await self._warm(record, receive, send)
            elif self.strict and method == "POST" and path == "/tokenize":
                limits = {"vocab_size": self.vocab_size, "max_model_len": self.max_model_len}
                body = fake_checks.json_object(raw)
                await answer_json(send, 200, fake_checks.tokenize(body, model=self.model, **limits))
            elif self.strict and method == "POST" and path == "/v1/chat/completions":
                body = fake_checks.json_object(raw)
                answer = fake_checks.chat(body, model=self.model, reply=self.reply)
                await answer_json(send, 200, answer)
            else:
                await self._other(method, path, send)
        except Rejected as rejected:
            self.rejected.append((path, rejected.status, rejected.message))
            kind = "NotFoundError" if rejected.status == 404 else "BadRequestError"
            error = {"message": rejected.message, "type": kind, "param": None}
            await answer_json(send, rejected.status, {"error": {**error, "code": rejected.status}})

    def _record(self, body: dict[str, Any], raw: bytes, scope: Scope, arrived: float) -> Recorded:
        headers = dict(scope["headers"])
        request_id, route = headers.get(b"x-request-id"), headers.get(b"x-session-id")
        record = Recorded(
            body={} if self.fast else body,
            at=time.monotonic(),
            wall=arrived,
            request_id=request_id.decode("latin-1") if request_id is not None else None,
            body_bytes=len(raw),
            prompt_tokens=prompt_length(body.get("prompt")),
            stream=bool(body.get("stream")),
            max_tokens=body.get("max_tokens"),
            include_usage=include_usage(body),
            route=route.decode("latin-1") if route is not None else None,
        )
        self.completions.append(record)
        return record

    async def _other(self, method: str, path: str, send: Send) -> None:
        if method == "GET" and path == "/v1/models":
            self.gets.append(path)
            model = {"id": self.model, "object": "model", "max_model_len": self.max_model_len}
            await answer_json(send, 200, {"object": "list", "data": [model]})
        elif method == "GET" and path == "/metrics":
            self.gets.append(path)
            text = (
                "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
                "# TYPE vllm:cache_config_info gauge\n"
                f'vllm:cache_config_info{{block_size="{self.block_size}",engine="0",'
                'enable_prefix_caching="True"} 1.0\n'
                "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                "# TYPE vllm:num_requests_running gauge\n"
                f'vllm:num_requests_running{{engine="0"}} {self.streams_open:.1f}\n'
            )
            await answer(send, 200, text.encode(), b"text/plain; version=0.0.4")
        elif method == "GET" and path == "/fake/requests":
            await answer_json(send, 200, [record.summary() for record in self.completions])
        elif method == "POST" and path == "/fake/reset":
            self.completions.clear()
            await answer_json(send, 200, {"ok": True})
        else:
            await answer_json(send, 404, {"error": {"message": f"no route {method} {path}"}})

    async def _warm(self, record: Recorded, receive: Receive, send: Send) -> None:
        self.warm_in_flight += 1
        self.max_warm_in_flight = max(self.max_warm_in_flight, self.warm_in_flight)
        try:
            hold = self._release if record.is_warmup else self._answers_release
            if hold is not None and await client_left(hold, receive):
                record.disconnected = True  # vLLM would abort it here
                return
            if self.warm_status != 200:
                error = {"error": {"message": "warm-up exploded", "code": self.warm_status}}
                await answer_json(send, self.warm_status, error)
                return
            tokens = self._tokens(record)
            record.usage = self._usage(record.body, record.prompt_tokens, len(tokens))
            choice = self._choice("".join(tokens), "length")
            answer = {**self._base(record), "choices": [choice], "usage": record.usage}
            await answer_json(send, 200, answer)
        finally:
            self.warm_in_flight -= 1

    async def _stream(self, record: Recorded, receive: Receive, send: Send) -> None:
        if self.final_status != 200:
            error = {"error": {"message": "final request exploded", "code": self.final_status}}
            await answer_json(send, self.final_status, error)
            return
        self.streams_open += 1
        try:
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            hold = self._streams_release
            if hold is not None and await client_left(hold, receive):
                record.disconnected = True  # vLLM would abort it here
                return
            tokens, matched = stopped(self._tokens(record), record.body)
            base = self._base(record)
            record.usage = self._usage(record.body, record.prompt_tokens, len(tokens))
            first = 0 if self.fast else self._reply_done(record.prompt)
            ends = self.fast or first + len(tokens) == len(self.reply)
            for i, text in enumerate(tokens):
                last = i == len(tokens) - 1
                ended = ends or matched is not None
                finish = ("stop" if ended and not self.fast else "length") if last else None
                choice = self._choice(text, finish)
                if not self.fast:
                    choice["stop_reason"] = matched if last else None
                if record.body.get("return_token_ids"):
                    choice["token_ids"] = [REPLY_ID_BASE + first + i]
                await send_event(send, {**base, "choices": [choice]})
                if self.stream_hang:
                    # Wait for the client to go away: uvicorn's receive() answers
                    # http.disconnect only once the connection is closed.
                    message = await receive()
                    record.disconnected = message["type"] == "http.disconnect"
                    return
                if await client_gone(receive, self.token_delay_s if not last else 0.0):
                    record.disconnected = True
                    return
            if not self.fast or record.include_usage:
                await send_event(send, {**base, "choices": [], "usage": record.usage})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        finally:
            self.streams_open -= 1


def stopped(tokens: tuple[str, ...], body: dict[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """`tokens` up to the first of the body's `stop` strings (kept if the body says so: the
    token holding it is cut after it), and the string matched, if any."""
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    text = ""
    for i, token in enumerate(tokens):
        found = [(at, stop) for stop in stops if (at := (text + token).find(stop)) >= 0]
        if found:
            at, stop = min(found)
            end = at + (len(stop) if body.get("include_stop_str_in_output") else 0)
            cut = (text + token)[len(text) : end]
            return (*tokens[:i], *([cut] if cut else [])), stop
        text += token
    return tokens, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.fake_vllm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--strict", action="store_true", help="check bodies as vLLM does")
    args = parser.parse_args(argv)
    app = FakeVLLM(model=args.model, block_size=args.block_size, fast=True, strict=args.strict)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
