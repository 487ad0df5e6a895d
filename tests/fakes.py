"""What the session tests run against the orchestrator besides the test kit (the fake vLLM and
the server runner, `testkit/`): waiting, the fake on a port of the test's own event loop, a
WebSocket client that keeps every frame it receives, and an upstream transport that records what
the orchestrator sends.

Everything runs in ONE asyncio loop (the test's), so a test can hold the fake's handlers with
plain `asyncio.Event`s and look at the orchestrator's own tasks with `asyncio.all_tasks()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

from orchestrator.web.auth import SUBPROTOCOL_PREFIX
from testkit.fake_vllm import FakeVLLM
from testkit.serving import serve

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


SESSION_TASK_OWNERS = (
    "Session.",
    "FinalAnswer.",
    "Warmer.",
    "Speculator.",
)  # generations and warm-ups


def session_tasks() -> list[asyncio.Task[Any]]:
    """The orchestrator's session tasks (warm-ups, generations) still alive in this loop."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and getattr(task.get_coro(), "__qualname__", "").startswith(SESSION_TASK_OWNERS)
    ]


# --- the fake vLLM --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fake_on_a_port(vllm: FakeVLLM) -> AsyncIterator[FakeVLLM]:
    """`vllm` served on a free port of the running loop, its `url` set."""
    async with serve(vllm) as url:
        vllm.url = url
        yield vllm


async def let_go(vllm: FakeVLLM) -> None:
    """After a test: release what it held and wait for the fake's handlers to end."""
    vllm.release_warmups()
    vllm.release_streams()
    idle = lambda: vllm.warm_in_flight == 0 and vllm.streams_open == 0  # noqa: E731
    await wait_until(idle, what="the fake's handlers to end")


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
    async def connect(
        cls, base_url: str, *, key: str | None = None, origin: str | None = None
    ) -> AsyncIterator[SessionClient]:
        """A connected client; `key` goes as the subprotocol `prefill.bearer.<key>`."""
        url = base_url.replace("http://", "ws://") + "/ws/session"
        protocols = [Subprotocol(SUBPROTOCOL_PREFIX + key)] if key else None
        origin_header = Origin(origin) if origin else None
        async with connect(
            url, subprotocols=protocols, origin=origin_header, open_timeout=10, close_timeout=2
        ) as ws:
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

    def pass_over(self) -> None:
        """Count every frame received so far as returned: `next` waits for newer ones."""
        self._taken.update(range(len(self.frames)))

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
