"""Reusable fakes for session tests: a recording fake vLLM, uvicorn in the test's own event
loop, and a WebSocket client that keeps every frame it receives.

Everything runs in ONE asyncio loop (the test's), so a test can hold the fake's handlers with
plain `asyncio.Event`s and look at the orchestrator's own tasks with `asyncio.all_tasks()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

# --- waiting ------------------------------------------------------------------------------


async def wait_until(
    predicate: Callable[[], bool], *, within: float = 5.0, what: str = "condition"
) -> None:
    """Poll `predicate` until it holds; fail the test (not hang) after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


SESSION_TASK_OWNERS = ("Session.", "FinalAnswer.", "Warmer.")  # generations and warm-ups


def session_tasks() -> list[asyncio.Task[Any]]:
    """The orchestrator's session tasks (warm-ups, generations) still alive in this loop."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and getattr(task.get_coro(), "__qualname__", "").startswith(SESSION_TASK_OWNERS)
    ]


# --- uvicorn in the current event loop ------------------------------------------------------


class QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # leave pytest's signal handlers alone


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, *, websockets: bool = False) -> AsyncIterator[str]:
    """Serve `app` on a free port as a task of the running loop; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        ws="websockets-sansio" if websockets else "none",
        lifespan="on" if websockets else "off",
        timeout_graceful_shutdown=2,
    )
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if task.done():
                task.result()  # raises what made the start fail
                raise RuntimeError("uvicorn exited during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        sock.close()


# --- the fake vLLM --------------------------------------------------------------------------

Fake = TypeVar("Fake", bound="FakeVLLM")


@contextlib.asynccontextmanager
async def fake_on_a_port(vllm: Fake) -> AsyncIterator[Fake]:
    """`vllm` served on a free port of the running loop, its `url` set."""
    async with serve(vllm) as url:
        vllm.url = url
        yield vllm


async def let_go(vllm: FakeVLLM) -> None:
    """After a test: release what it held and wait for the fake's handlers to end."""
    vllm.release_warmups()
    idle = lambda: vllm.warm_in_flight == 0 and vllm.streams_open == 0  # noqa: E731
    await wait_until(idle, what="the fake's handlers to end")


@dataclass
class Recorded:
    """One POST /v1/completions the fake received, and the usage it answered with."""

    body: dict[str, Any]
    at: float  # time.monotonic() on arrival
    usage: dict[str, Any] | None = None
    disconnected: bool = False  # the client went away before the end (a held warm-up, a stream)

    @property
    def prompt(self) -> list[int]:
        prompt: list[int] = self.body["prompt"]
        return prompt

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


@dataclass
class FakeVLLM:
    """A raw-ASGI stand-in for vLLM's OpenAI server that records every request body.

    It simulates automatic prefix caching (per `cache_salt`, full blocks only, the last prompt
    token never a hit), so the `cached_tokens` it reports are what vLLM would report.
    Knobs a test may turn: `hold_warmups()` / `release_warmups()`, `warm_status`,
    `final_status`, `stream_hang` (send the first token, then wait for the client to leave).
    """

    model: str = "fake-model"
    max_model_len: int = 8192
    block_size: int = 32  # what /metrics says and what the cache simulation uses
    reply: tuple[str, ...] = ("SELECT", " name", " FROM", " customers", ";")
    warm_status: int = 200
    final_status: int = 200
    stream_hang: bool = False
    url: str = ""
    completions: list[Recorded] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)
    warm_in_flight: int = 0
    max_warm_in_flight: int = 0
    streams_open: int = 0
    _release: asyncio.Event | None = None
    _cache: set[tuple[str, tuple[int, ...]]] = field(default_factory=set)

    # -- what it saw --
    @property
    def warmups(self) -> list[Recorded]:
        return [r for r in self.completions if not r.stream and r.body.get("max_tokens") == 1]

    @property
    def finals(self) -> list[Recorded]:
        return [r for r in self.completions if r not in self.warmups]

    @property
    def stream_disconnects(self) -> int:
        return sum(r.disconnected for r in self.finals)

    # -- knobs --
    def reset(self) -> None:
        """Back to the defaults and an empty record (one fake serves many tests)."""
        for spec in fields(self):
            if spec.name == "url":
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

    # -- the prefix-cache simulation --
    def _cached_tokens(self, salt: str, prompt: list[int]) -> int:
        b, hits = self.block_size, 0
        while (hits + 1) * b <= len(prompt) - 1 and (salt, tuple(prompt[: (hits + 1) * b])) in (
            self._cache
        ):
            hits += 1
        return hits * b

    def _compute(self, body: dict[str, Any]) -> dict[str, Any]:
        salt, prompt = str(body.get("cache_salt") or ""), list(body["prompt"])
        cached = self._cached_tokens(salt, prompt)
        for end in range(self.block_size, len(prompt) + 1, self.block_size):
            self._cache.add((salt, tuple(prompt[:end])))
        completion = 1 if not body.get("stream") else len(self.reply)
        return {
            "prompt_tokens": len(prompt),
            "completion_tokens": completion,
            "total_tokens": len(prompt) + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    # -- ASGI --
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/v1/models":
            self.gets.append(path)
            model = {"id": self.model, "object": "model", "max_model_len": self.max_model_len}
            await self._json(send, 200, {"object": "list", "data": [model]})
        elif method == "GET" and path == "/metrics":
            self.gets.append(path)
            text = (
                "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
                "# TYPE vllm:cache_config_info gauge\n"
                f'vllm:cache_config_info{{block_size="{self.block_size}",engine="0",'
                'enable_prefix_caching="True"} 1.0\n'
            )
            await _respond(send, 200, text.encode(), b"text/plain; version=0.0.4")
        elif method == "POST" and path == "/v1/completions":
            record = Recorded(json.loads(body), time.monotonic())
            self.completions.append(record)
            if record.stream:
                await self._stream(record, receive, send)
            else:
                await self._warm(record, receive, send)
        else:
            await self._json(send, 404, {"error": {"message": f"no route {method} {path}"}})

    async def _warm(self, record: Recorded, receive: Receive, send: Send) -> None:
        self.warm_in_flight += 1
        self.max_warm_in_flight = max(self.max_warm_in_flight, self.warm_in_flight)
        try:
            if self._release is not None and await self._client_left(self._release, receive):
                record.disconnected = True  # vLLM would abort it here
                return
            if self.warm_status != 200:
                error = {"error": {"message": "warm-up exploded", "code": self.warm_status}}
                await self._json(send, self.warm_status, error)
                return
            record.usage = self._compute(record.body)
            choice = {"index": 0, "text": "x", "finish_reason": "length"}
            answer = {"object": "text_completion", "model": self.model, "choices": [choice]}
            await self._json(send, 200, {**answer, "usage": record.usage})
        finally:
            self.warm_in_flight -= 1

    @staticmethod
    async def _client_left(release: asyncio.Event, receive: Receive) -> bool:
        """Wait for `release`; True if the client disconnected first."""
        released = asyncio.ensure_future(release.wait())
        left = asyncio.ensure_future(receive())
        done, _ = await asyncio.wait({released, left}, return_when=asyncio.FIRST_COMPLETED)
        for task in (released, left):
            task.cancel()
        return left in done and left.result()["type"] == "http.disconnect"

    async def _stream(self, record: Recorded, receive: Receive, send: Send) -> None:
        if self.final_status != 200:
            error = {"error": {"message": "final request exploded", "code": self.final_status}}
            await self._json(send, self.final_status, error)
            return
        self.streams_open += 1
        try:
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            record.usage = self._compute(record.body)
            for i, text in enumerate(self.reply):
                last = i == len(self.reply) - 1
                choice = {"index": 0, "text": text, "finish_reason": "stop" if last else None}
                await _event(send, {"object": "text_completion", "choices": [choice]})
                if self.stream_hang:
                    # Wait for the client to go away: uvicorn's receive() answers
                    # http.disconnect only once the connection is closed.
                    message = await receive()
                    record.disconnected = message["type"] == "http.disconnect"
                    return
                await asyncio.sleep(0)
            await _event(send, {"object": "text_completion", "choices": [], "usage": record.usage})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        finally:
            self.streams_open -= 1

    async def _json(self, send: Send, status: int, data: dict[str, Any]) -> None:
        await _respond(send, status, json.dumps(data).encode(), b"application/json")


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _event(send: Send, data: dict[str, Any]) -> None:
    payload = f"data: {json.dumps(data)}\n\n".encode()
    await send({"type": "http.response.body", "body": payload, "more_body": True})


# --- the WebSocket client -------------------------------------------------------------------


class SessionClient:
    """A `/ws/session` client that reads in the background and keeps every frame.

    `next(type)` returns the oldest frame of that type not returned before, so frames that
    arrive asynchronously (warm, error) never get in the way of the ones a test waits for.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.closed = False
        self._taken: set[int] = set()
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, base_url: str) -> AsyncIterator[SessionClient]:
        url = base_url.replace("http://", "ws://") + "/ws/session"
        async with connect(url, open_timeout=10, close_timeout=2) as ws:
            client = cls(ws)
            try:
                yield client
            finally:
                await ws.close()
                await client._reader

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.frames.append(json.loads(message))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._arrived.set()

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    async def type_text(self, text: str, *, per_word: bool = False) -> int:
        """One `input` frame per keystroke (or per word), the whole text so far each time;
        returns the last frame's seq."""
        ends = [i for i in range(1, len(text) + 1) if not per_word or text[i - 1] == " "]
        if ends[-1:] != [len(text)]:
            ends.append(len(text))
        for seq, end in enumerate(ends, start=1):
            await self.send(type="input", text=text[:end], seq=seq)
        return len(ends)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["type"] == kind]

    async def next(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        *,
        within: float = 5.0,
    ) -> dict[str, Any]:
        """The oldest not-yet-returned frame of type `kind` (and matching `where`)."""
        deadline = time.monotonic() + within
        while True:
            for i, frame in enumerate(self.frames):
                if i in self._taken or frame["type"] != kind:
                    continue
                if where is None or where(frame):
                    self._taken.add(i)
                    return frame
            left = deadline - time.monotonic()
            if self.closed or left <= 0:
                state = "the socket closed" if self.closed else f"{within} s passed"
                raise AssertionError(f"no {kind!r} frame ({state}); got {self.frames}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=left)

    async def barrier(self) -> None:
        """Return once the server has handled every frame sent before this call.

        The route handles frames one at a time and answers a bad one at once, so the error
        for this deliberately unknown frame comes after all earlier frames were handled.
        """
        await self.send(type="barrier")
        await self.next("error", lambda frame: "'barrier'" in frame["message"])
