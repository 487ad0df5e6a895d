"""Raw-ASGI plumbing of the fake vLLM (`testkit/fake_vllm.py`): the lifespan handshake, reading a
request body, answering JSON, plain bytes or server-sent events, and noticing a client that
went away while an answer waits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Receive, Send


async def client_gone(receive: Receive, delay_s: float) -> bool:
    """Wait `delay_s` (at least one turn of the loop); True if the client went away meanwhile."""
    if delay_s <= 0:
        await asyncio.sleep(0)
        return False
    message = asyncio.ensure_future(receive())
    done, _ = await asyncio.wait({message}, timeout=delay_s)
    if not done:
        message.cancel()
        return False
    return bool(message.result()["type"] == "http.disconnect")


async def client_left(release: asyncio.Event, receive: Receive) -> bool:
    """Wait for `release`; True if the client disconnected first."""
    released = asyncio.ensure_future(release.wait())
    left = asyncio.ensure_future(receive())
    done, _ = await asyncio.wait({released, left}, return_when=asyncio.FIRST_COMPLETED)
    for task in (released, left):
        task.cancel()
    return left in done and left.result()["type"] == "http.disconnect"


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


async def answer_json(send: Send, status: int, data: Any) -> None:
    await answer(send, status, json.dumps(data).encode(), b"application/json")


async def answer(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_event(send: Send, data: dict[str, Any]) -> None:
    payload = f"data: {json.dumps(data)}\n\n".encode()
    await send({"type": "http.response.body", "body": payload, "more_body": True})
