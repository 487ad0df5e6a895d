"""ASGI middleware: every HTTP request gets a request id; bodies over the limit get 413 in
the OpenAI envelope."""

from __future__ import annotations

import json
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import PayloadTooLarge
from orchestrator.logs import REQUEST_ID

REQUEST_ID_HEADER = b"x-request-id"
GOOD_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=@-]{1,128}$")  # safe in a log line and header


class RequestId:
    """ASGI middleware: the request's `X-Request-Id` (a new `prefill-<hex>` when it has none,
    or one unfit for a log line) is put in the request's headers, in the log context
    (`logs.REQUEST_ID`) and in the response's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != REQUEST_ID_HEADER]
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        rid = given if GOOD_REQUEST_ID.match(given) else f"prefill-{uuid.uuid4().hex}".encode()
        scope = {**scope, "headers": [*headers, (REQUEST_ID_HEADER, rid)]}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent = [(k, v) for k, v in message.get("headers", []) if k != REQUEST_ID_HEADER]
                message = {**message, "headers": [*sent, (REQUEST_ID_HEADER, rid)]}
            await send(message)

        token = REQUEST_ID.set(rid.decode())
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class BodySizeLimit:
    """ASGI middleware: an HTTP body over `max_bytes` gets 413 in the OpenAI envelope,
    whether it announces its length or streams in chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.reject(send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before the end
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self.reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def reject(self, send: Send) -> None:
        error = PayloadTooLarge(f"the request body is larger than {self.max_bytes} bytes")
        body = json.dumps(error.envelope()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the already read body over once, then waits for the real one
    (which is how a handler learns that the client went away)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
