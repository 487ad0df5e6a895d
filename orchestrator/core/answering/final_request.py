"""Every final request goes this one way: a session's submit (WebSocket) or chat completion
(HTTP with `X-Session-Id`), a named state's generate, and the passthrough's relay.

`Finals.open` admits the final to the warm-up scheduler (a `FinalTicket`: fewer warm-up
pieces until its first token; the tenant's finals limit) and sends it with its request id and
routing key through `VLLMClient.open` (an error status raises `errors.upstream_error`: vLLM's
status and error, the same on every path). A session's final may attach to its speculation
instead (`speculation.attached_chunks`). The `FinalReply` then gives the answer whole
(`json`, `read`) or streamed (`chunks`: parsed; `events`: SSE for an HTTP client); it sees
the first token (TTFT from the request's arrival, the ticket told) and vLLM's usage, and when
closed it releases the ticket and the upstream stream (vLLM aborts an unfinished request)
and records the final in the metrics, once. Each caller adds only its own framing.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from orchestrator.core.answering.speculation import Speculation, attached_chunks
from orchestrator.core.engine.salt import ROUTE_HEADER
from orchestrator.core.engine.vllm_client import Usage, VLLMClient, VLLMStream
from orchestrator.core.metrics import Metrics
from orchestrator.core.warming.scheduler import FinalTicket, WarmScheduler
from orchestrator.errors import ServiceError

Chunk = dict[str, Any]
SSE_DONE = b"data: [DONE]\n\n"  # the end of an OpenAI event stream
REQUEST_ID_HEADER = "X-Request-Id"


def final_priority(asked: Any, final: int) -> int:
    """A client may lower its own priority (a larger value), never jump ahead of finals."""
    return max(asked, final) if isinstance(asked, int) and not isinstance(asked, bool) else final


@dataclass(frozen=True)
class FinalRequest:
    """A final request for vLLM: what it asks and where it belongs."""

    body: dict[str, Any]  # the upstream body, salt and priority set
    tenant: str
    route: str | None  # the routing key: the replica that holds its blocks (behind a router)
    request_id: str
    mode: str  # who asked, for the metrics: a session's warm strategy, "http", "state", "relay"
    session_id: str | None = None
    path: str = "/v1/completions"
    headers: Mapping[str, str] = field(default_factory=dict)  # more headers (the relay's)
    received: float = field(default_factory=time.perf_counter)  # TTFT counts from here

    @property
    def streams(self) -> bool:
        return bool(self.body.get("stream"))

    def upstream_headers(self) -> dict[str, str]:
        """The request's own headers, then its request id and routing key (never a client's)."""
        ours = {REQUEST_ID_HEADER.lower(), ROUTE_HEADER.lower()}
        given = {key: value for key, value in self.headers.items() if key.lower() not in ours}
        routed = {ROUTE_HEADER: self.route} if self.route else {}
        return {**given, REQUEST_ID_HEADER: self.request_id, **routed}


class Finals:
    """Sends the application's final requests (built once, shared by every route)."""

    def __init__(self, vllm: VLLMClient, scheduler: WarmScheduler, metrics: Metrics) -> None:
        self.vllm = vllm
        self.scheduler = scheduler
        self.metrics = metrics

    async def open(
        self, request: FinalRequest, speculation: Speculation | None = None
    ) -> FinalReply:
        """Admit and send `request` (or go on from `speculation`, which asked the same);
        RateLimited, InvalidRequest or an UpstreamError when there is no answer to read."""
        ticket = self.scheduler.final_started(request.session_id, request.tenant)
        try:
            if speculation is not None:
                chunks = attached_chunks(speculation, self.vllm, request.request_id, request.route)
                return FinalReply(request, ticket, self, attached=chunks)
            headers = request.upstream_headers()
            stream = await self.vllm.open(request.path, request.body, headers)
        except BaseException:
            ticket.close()
            raise
        return FinalReply(request, ticket, self, stream=stream)


class FinalReply:
    """vLLM's answer to one final request, its status checked; close it (or use `async
    with`) when done with it."""

    def __init__(
        self,
        request: FinalRequest,
        ticket: FinalTicket,
        finals: Finals,
        *,
        stream: VLLMStream | None = None,
        attached: AsyncGenerator[Chunk] | None = None,
    ) -> None:
        self.request = request
        self.ticket = ticket
        self.finals = finals
        self.stream = stream
        self.attached = attached  # the chunks of the speculation it attached to
        self.ttft_ms: float | None = None
        self.usage: Usage | None = None
        self.finish: str | None = None  # the caller's word, for the metrics ("cancelled")
        self.closed = False

    @property
    def headers(self) -> httpx.Headers:
        return self.stream.response.headers if self.stream is not None else httpx.Headers()

    def saw(self, chunk: dict[str, Any]) -> None:
        """One chunk of the answer: its first text is the first token; usage is kept."""
        if self.ttft_ms is None and any(has_text(c) for c in chunk.get("choices") or ()):
            self.ttft_ms = (time.perf_counter() - self.request.received) * 1000
            self.ticket.first_token()
        if isinstance(chunk.get("usage"), dict):
            self.usage = Usage.from_body(chunk["usage"])

    async def chunks(self) -> AsyncIterator[Chunk]:
        """The streamed answer's chunks; a failure mid-stream raises an UpstreamError."""
        source = self.attached if self.attached is not None else self.upstream().chunks()
        async for chunk in source:
            self.saw(chunk)
            yield chunk

    async def events(self, convert: Callable[[Chunk], Chunk] = lambda c: c) -> AsyncIterator[bytes]:
        """The streamed answer as SSE events for an HTTP client (each chunk `convert`ed), as
        they arrive, then `[DONE]`; an error ends it with an event in the OpenAI envelope."""
        try:
            async for chunk in self.chunks():
                yield sse_event(convert(chunk))
        except ServiceError as error:
            yield sse_event(error.envelope())
        yield SSE_DONE

    async def read(self) -> bytes:
        """The whole answer of a final that was not streamed, as vLLM sent it."""
        content = await self.upstream().read()
        with contextlib.suppress(ValueError):  # not JSON: passed on as it is
            self.saw_body(json.loads(content))
        return content

    async def json(self) -> dict[str, Any]:
        """The whole answer of a final that was not streamed, as a JSON object."""
        body = json.loads(await self.read())
        return body if isinstance(body, dict) else {}

    def upstream(self) -> VLLMStream:
        assert self.stream is not None, "an attached reply has no upstream answer of its own"
        return self.stream

    def saw_body(self, body: Any) -> None:
        if isinstance(body, dict):
            self.ticket.first_token()
            if isinstance(body.get("usage"), dict):
                self.usage = Usage.from_body(body["usage"])

    async def aclose(self) -> None:
        """Release the ticket and the upstream stream; count the final (once)."""
        if self.closed:
            return
        self.closed = True
        self.ticket.close()
        try:
            if self.attached is not None:
                await self.attached.aclose()
            if self.stream is not None:
                await self.stream.aclose()
        finally:
            usage = None if self.finish == "cancelled" else self.usage
            self.finals.metrics.final_answered(self.request.mode, self.ttft_ms, usage, self.finish)

    async def __aenter__(self) -> FinalReply:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def closing(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`events` for a streaming response: when they end, or the client goes away (the
        server cancels the generator), the reply is closed."""
        try:
            async for event in events:
                yield event
        finally:
            await self.aclose()


def sse_event(data: dict[str, Any]) -> bytes:
    """One server-sent event for an HTTP client."""
    return f"data: {json.dumps(data)}\n\n".encode()


def has_text(choice: Any) -> bool:
    """A completion choice's text, or a chat choice's content, is not empty."""
    if not isinstance(choice, dict):
        return False
    delta: Any = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
    return bool(choice.get("text") or delta.get("content") or delta.get("reasoning_content"))
