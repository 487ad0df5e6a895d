"""`/ws/session`: read frames, hand them to the session, answer bad ones with an error frame.

Follow a keystroke: `receive` → `parse_client_frame` (protocol.py) → `Session.on_input`
(session.py) → `WarmPlanner.on_input` (planner.py) → `Session.run_warm` → vLLM.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from orchestrator import protocol
from orchestrator.errors import ServiceError
from orchestrator.services import services_of
from orchestrator.session import Session

router = APIRouter()
ANONYMOUS_TENANT = "anonymous"


class FrameSender:
    """Serialises sends from the reader and the session's tasks; quiet once the socket closed."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.lock = asyncio.Lock()

    async def __call__(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            if self.websocket.application_state != WebSocketState.CONNECTED:
                return
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.send_json(frame)


@router.websocket("/ws/session")
async def ws_session(websocket: WebSocket) -> None:
    services = services_of(websocket)
    await websocket.accept()
    send = FrameSender(websocket)
    session = Session(services, send, tenant=ANONYMOUS_TENANT)
    services.sessions[session.id] = session
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            received = time.perf_counter()
            raw = message.get("text") or message.get("bytes") or b""
            try:
                await handle(session, protocol.parse_client_frame(raw), received)
            except ServiceError as error:
                await send(error.frame())
    except WebSocketDisconnect:
        pass
    finally:
        services.sessions.pop(session.id, None)
        await session.close()


async def handle(
    session: Session,
    frame: protocol.Start | protocol.Input | protocol.Submit | protocol.Cancel,
    received: float,
) -> None:
    if isinstance(frame, protocol.Input):
        session.on_input(frame)
    elif isinstance(frame, protocol.Submit):
        await session.submit(frame, received)
    elif isinstance(frame, protocol.Start):
        await session.start(frame)
    else:
        session.cancel()
