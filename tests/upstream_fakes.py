"""More from the fake upstream, for the hardening and fuzz tests (built on `tests/fakes.py`).

- `StrictFakeVLLM`: the recording fake, but it answers 4xx where vLLM would (unknown model,
  bad prompt, token ids out of the vocabulary, a prompt over `max_model_len`, bad chat messages)
  and also serves `/tokenize` and `/v1/chat/completions`, so that every 5xx the orchestrator
  sends is its own doing, never the fake's.
- `Upstream`: an ASGI app served on a fixed port that a test can kill the way a crashed vLLM
  dies (listener closed, every connection cut at once) and start again on the same port.
- `CountingTransport`: the orchestrator's upstream transport, recording every request it
  attempts (also those that never connect) and showing its connection pool.
- `ws_client`: a `SessionClient` that can offer an API key as subprotocol and send an Origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol

from eval.serving import free_port
from orchestrator.web.middleware import replay_body
from tests.fakes import FakeVLLM, QuietServer, SessionClient, wait_until

SUBPROTOCOL_PREFIX = "prefill.bearer."

# --- a fake that refuses what vLLM refuses --------------------------------------------------


class Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class StrictFakeVLLM(FakeVLLM):
    """`FakeVLLM` plus vLLM's own input checks (its 4xx answers) and two more routes."""

    vocab_size: int = 49152
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (path, status, why)
    refused_salts: set[str] = field(default_factory=set)  # warm-ups under these get a 400

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        try:
            if method == "POST" and path == "/tokenize":
                await self._json(send, 200, self._tokenize(_json_object(body)))
                return
            if method == "POST" and path == "/v1/chat/completions":
                await self._json(send, 200, self._chat(_json_object(body)))
                return
            if method == "POST" and path == "/v1/completions":
                self._check_completion(_json_object(body))
        except Rejected as rejected:
            self.rejected.append((path, rejected.status, rejected.message))
            kind = "NotFoundError" if rejected.status == 404 else "BadRequestError"
            error = {"message": rejected.message, "type": kind, "param": None}
            await self._json(send, rejected.status, {"error": {**error, "code": rejected.status}})
            return
        await super().__call__(scope, replay_body(body, receive), send)

    # -- vLLM's checks --
    def _check_model(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model is not None and model != self.model:
            raise Rejected(404, f"The model `{model}` does not exist.")

    def _check_completion(self, body: dict[str, Any]) -> None:
        self._check_model(body)
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            length = len(prompt)
        elif isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt):
            bad = [t for t in prompt if not 0 <= t < self.vocab_size]
            if bad:
                raise Rejected(400, f"Token id {bad[0]} is out of vocabulary")
            length = len(prompt)
        else:
            raise Rejected(400, "prompt must be a string or a non-empty list of token ids")
        max_tokens = body.get("max_tokens", 16)
        if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
            raise Rejected(400, "max_tokens must be a positive integer")
        if length + (max_tokens or 0) > self.max_model_len:
            raise Rejected(400, f"This model's maximum context length is {self.max_model_len}")
        for name, kinds in (("stream", bool), ("temperature", (int, float)), ("priority", int)):
            if body.get(name) is not None and not isinstance(body[name], kinds):
                raise Rejected(400, f"{name} has the wrong type")
        if body.get("n", 1) != 1:
            raise Rejected(400, "this fake answers n=1 only")
        if max_tokens == 1 and body.get("cache_salt") in self.refused_salts:
            raise Rejected(400, "this warm-up is refused (the test asked for it)")

    def _messages_text(self, messages: Any) -> str:
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

    def _tokens(self, text: str) -> list[int]:
        return [ord(char) % self.vocab_size for char in text]

    def _tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_model(body)
        if isinstance(body.get("prompt"), str) and "messages" not in body:
            tokens = self._tokens(body["prompt"])
        elif "messages" in body and "prompt" not in body:
            tokens = self._tokens(self._messages_text(body["messages"]))
        else:
            raise Rejected(400, "give a string prompt or messages")
        return {"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens}

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_model(body)
        prompt = len(self._messages_text(body.get("messages")))
        if body.get("stream"):
            raise Rejected(400, "this fake does not stream chats")
        message = {"role": "assistant", "content": "".join(self.reply)}
        return {
            "object": "chat.completion",
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(self.reply)},
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise Rejected(400, "the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise Rejected(400, "the body is not a JSON object")
    return parsed


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


# --- a server that can crash and come back ----------------------------------------------------


class Upstream:
    """`app` on uvicorn at a fixed port in the running loop; `kill()` and `start()` again."""

    def __init__(self, app: ASGIApp, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.server: QuietServer | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        assert self.server is None, "already running"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(
            self.app, log_config=None, log_level="critical", access_log=False, lifespan="off"
        )
        self.server = QuietServer(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        await wait_until(lambda: self.server is not None and self.server.started, what="upstream")

    async def kill(self) -> None:
        """Die like a crashed process: no new connections, every open one reset at once."""
        server, task = self.server, self.task
        assert server is not None, "not running"
        assert task is not None
        for listener in server.servers:
            listener.close()
        for connection in list(server.server_state.connections):
            connection.transport.abort()
        server.force_exit = server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        self.server = self.task = None

    async def stop(self) -> None:
        if self.server is not None:
            await self.kill()

    @property
    def open_connections(self) -> int:
        return len(self.server.server_state.connections) if self.server else 0


# --- what the orchestrator sends upstream -----------------------------------------------------


@dataclass
class Sent:
    method: str
    path: str
    at: float
    body: dict[str, Any] | None
    failed: bool = False

    @property
    def is_warmup(self) -> bool:
        body = self.body or {}
        return (
            self.path == "/v1/completions"
            and body.get("max_tokens") == 1
            and not body.get("stream")
        )


class CountingTransport(httpx.AsyncBaseTransport):
    """A real HTTP transport that records every request the orchestrator attempts upstream."""

    def __init__(self) -> None:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        self.inner = httpx.AsyncHTTPTransport(limits=limits)
        self.sent: list[Sent] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.method == "POST" else None
        record = Sent(request.method, request.url.path, time.monotonic(), body)
        self.sent.append(record)
        try:
            return await self.inner.handle_async_request(request)
        except httpx.TransportError:
            record.failed = True
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()

    def warmups_between(self, start: float, end: float) -> list[Sent]:
        return [sent for sent in self.sent if sent.is_warmup and start <= sent.at <= end]

    @property
    def open_connections(self) -> int:
        return sum(not conn.is_closed() for conn in self.inner._pool.connections)

    @property
    def busy_connections(self) -> int:
        """Connections of the pool that carry a request (or are being opened for one)."""
        pool = self.inner._pool
        return sum(not (conn.is_idle() or conn.is_closed()) for conn in pool.connections)


# --- a WebSocket client with a key and an Origin ----------------------------------------------


@contextlib.asynccontextmanager
async def ws_client(
    base_url: str, *, key: str | None = None, origin: str | None = None
) -> AsyncIterator[SessionClient]:
    """A `SessionClient`; `key` goes as the subprotocol `prefill.bearer.<key>`."""
    url = base_url.replace("http://", "ws://") + "/ws/session"
    protocols = [Subprotocol(SUBPROTOCOL_PREFIX + key)] if key else None
    origin_header = Origin(origin) if origin else None
    async with connect(
        url, subprotocols=protocols, origin=origin_header, open_timeout=10, close_timeout=2
    ) as ws:
        client = SessionClient(ws)
        try:
            yield client
        finally:
            await ws.close()
            await wait_until(lambda: client.closed, what="the client's reader to end")
