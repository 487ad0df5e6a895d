"""`/ws/session`: admit the client, read frames, hand them to its session.

Follow a keystroke: `receive` → `parse_client_frame` (core/frames.py) → `Session.on_input`
(core/session.py) → `WarmPlanner.on_input` (core/planning/planner.py) → `Warmer.offer`
(core/warming/warmer.py) → `WarmDispatcher.send` (core/warming/dispatch.py) → vLLM.

Admission: the Host must be a trusted name (`hosts.py`, before any route), the Origin one of
those names at the service's port or an allowed origin; with API keys configured the
key comes as the subprotocol `prefill.bearer.<key>` or as `api_key` in the first frame.
A refused handshake is answered with HTTP 401/403 and the OpenAI error envelope (where the
server supports the WebSocket denial response; a bare 403 otherwise). Later violations close
the socket with 1008 (policy) or 1009 (too big) and a reason; bad frames get an error frame
and the session goes on.

A `submit`'s answer is the session's (`core/answering/answer.py`); `FrameResponder` only
formats it: `token` frames, then the `done` frame (or an `error` frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from orchestrator.core import frames as protocol
from orchestrator.core.answering.answer import Answer, Ended
from orchestrator.core.frames import Done, Error, ServerFrame, Token
from orchestrator.core.session import Session
from orchestrator.core.warming.gate import TokenBucket
from orchestrator.errors import RateLimited, ServiceError
from orchestrator.logs import SESSION_ID
from orchestrator.web.auth import subprotocol_key, tenant_for_key
from orchestrator.web.dependencies import services_of
from orchestrator.web.hosts import check_origin, listening_port
from orchestrator.web.services import Services

log = logging.getLogger(__name__)
router = APIRouter()
POLICY_VIOLATION, MESSAGE_TOO_BIG = 1008, 1009
FIRST_FRAME_TIMEOUT_S = 10.0
ClientFrame = protocol.Start | protocol.Input | protocol.Submit | protocol.Cancel


class FrameSender:
    """Serialises sends from the reader and the session's tasks; quiet once the socket closed."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.lock = asyncio.Lock()

    async def __call__(self, frame: ServerFrame) -> None:
        async with self.lock:
            if self.websocket.application_state != WebSocketState.CONNECTED:
                return
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.send_json(frame.dump())


class FrameResponder:
    """A session's answer as frames: `token`s (the first says what is known then), `done`."""

    def __init__(self, session: Session, send: FrameSender) -> None:
        self.session = session
        self.send = send

    async def piece(self, answer: Answer, text: str) -> None:
        if len(answer.output) > 1:
            await self.send(Token(text=text))
            return
        sheet = answer.final.sheet
        ttft_ms = answer.ttft_ms if answer.ttft_ms is not None else 0.0
        await self.send(Token.first(text, ttft_ms, len(sheet.tokens), sheet.warmed_tokens))

    async def ended(self, answer: Answer, ended: Ended) -> None:
        await self.send(done_frame(ended, self.session.seq))

    async def failed(self, error: ServiceError) -> None:
        await self.send(Error.of(error))


def done_frame(ended: Ended, seq: int) -> Done:
    usage = ended.usage
    return Done(
        seq=seq,
        ttft_ms=ended.ttft_ms,
        total_ms=ended.total_ms,
        prompt_tokens=usage.prompt_tokens,
        cached_tokens=usage.cached_tokens,
        completion_tokens=usage.completion_tokens,
        finish_reason=ended.finish_reason,
        stop_reason=ended.stop_reason,
        text=ended.text,
        warm_pieces=ended.warm_pieces,
        scorecard=ended.scorecard,
        **ended.context_fields,
    )


class Closing(Exception):
    """End the connection with a close code and a reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason[:120]  # a close reason fits in 123 bytes


@router.websocket("/ws/session")
async def ws_session(websocket: WebSocket) -> None:
    services = services_of(websocket)
    try:
        port = listening_port(websocket.scope, services.settings)
        check_origin(websocket.headers.get("origin"), services.settings, port)
        key, subprotocol = subprotocol_key(websocket)
        tenant = (
            tenant_for_key(services.settings, key)
            if key or not services.settings.api_keys
            else None
        )
    except ServiceError as error:
        await deny(websocket, error)
        return
    await websocket.accept(subprotocol=subprotocol)
    send = FrameSender(websocket)
    try:
        await serve(websocket, services, send, tenant)
    except Closing as closing:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await websocket.close(closing.code, closing.reason)
    except WebSocketDisconnect:
        pass


async def deny(websocket: WebSocket, error: ServiceError) -> None:
    """Refuse the handshake: status and envelope where the server can send them."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            JSONResponse(error.envelope(), status_code=error.status_code)
        )
    else:
        await websocket.close(POLICY_VIOLATION, error.message[:120])


async def serve(
    websocket: WebSocket, services: Services, send: FrameSender, tenant: str | None
) -> None:
    first: ClientFrame | None = None
    if tenant is None:  # the key must come in the first frame
        first, tenant = await first_frame_tenant(websocket, services, send)
    session = Session(services, send, tenant)
    SESSION_ID.set(session.id)  # this task's log records, and those of the tasks it starts
    try:
        services.sessions.admit(session)
    except RateLimited as error:
        log.warning("session refused: %s", error.message)
        await send(Error.of(error))
        raise Closing(POLICY_VIOLATION, error.message) from None
    log.info("session opened (tenant %s)", tenant)
    try:
        if first is not None:
            await dispatch(session, first, time.perf_counter(), send)
        await read_frames(websocket, services, session, send)
    finally:
        services.sessions.remove(session)
        await session.close()
        log.info("session closed")


async def first_frame_tenant(
    websocket: WebSocket, services: Services, send: FrameSender
) -> tuple[ClientFrame, str]:
    try:
        raw = await asyncio.wait_for(receive_raw(websocket, services), FIRST_FRAME_TIMEOUT_S)
        frame = protocol.parse_client_frame(raw)
        key = frame.api_key if isinstance(frame, protocol.Start) else None
        return frame, tenant_for_key(services.settings, key)
    except TimeoutError:
        raise Closing(POLICY_VIOLATION, "no start frame with an api_key") from None
    except ServiceError as error:
        await send(Error.of(error))
        raise Closing(POLICY_VIOLATION, error.message) from None


async def receive_raw(websocket: WebSocket, services: Services) -> str | bytes:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    raw: str | bytes = message.get("text") or message.get("bytes") or b""
    limit = services.settings.ws_max_message_bytes
    size = len(raw.encode()) if isinstance(raw, str) else len(raw)
    if size > limit:
        raise Closing(MESSAGE_TOO_BIG, f"frames are limited to {limit} bytes")
    return raw


async def read_frames(
    websocket: WebSocket, services: Services, session: Session, send: FrameSender
) -> None:
    rate = services.settings.ws_frames_per_second
    bucket = TokenBucket(rate, burst=2 * rate)
    last_rate_error = 0.0
    while True:
        raw = await receive_raw(websocket, services)
        received = time.perf_counter()
        if not bucket.try_take():
            if received - last_rate_error > 1.0:  # one error a second, not one per frame
                last_rate_error = received
                slow_down = RateLimited(f"more than {rate:g} frames a second; slow down")
                await send(Error.of(slow_down))
            continue
        try:
            frame = protocol.parse_client_frame(raw)
        except ServiceError as error:
            await send(Error.of(error))
            continue
        await dispatch(session, frame, received, send)


async def dispatch(
    session: Session, frame: ClientFrame, received: float, send: FrameSender
) -> None:
    try:
        if isinstance(frame, protocol.Input):
            session.services.metrics.keystrokes.inc()
            session.on_input(frame)
        elif isinstance(frame, protocol.Submit):
            await session.submit(frame, received, FrameResponder(session, send))
        elif isinstance(frame, protocol.Start):
            await session.start(frame)
        else:
            session.cancel()
    except ServiceError as error:
        await send(Error.of(error))
