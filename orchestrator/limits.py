"""Limits that keep one client from hurting the others: sessions, HTTP body size."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import PayloadTooLarge, RateLimited

if TYPE_CHECKING:
    from orchestrator.session import Session


class SessionRegistry:
    """Live WebSocket sessions by id, bounded in all and per tenant."""

    def __init__(self, max_sessions: int, max_per_tenant: int) -> None:
        self.max_sessions = max_sessions
        self.max_per_tenant = max_per_tenant
        self.sessions: dict[str, Session] = {}
        self.per_tenant: Counter[str] = Counter()

    def admit(self, session: Session) -> None:
        if len(self.sessions) >= self.max_sessions:
            raise RateLimited("the server has too many sessions; try again later")
        if self.per_tenant[session.tenant] >= self.max_per_tenant:
            raise RateLimited(f"too many sessions for this tenant (at most {self.max_per_tenant})")
        self.sessions[session.id] = session
        self.per_tenant[session.tenant] += 1

    def remove(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self.per_tenant[session.tenant] -= 1
            if self.per_tenant[session.tenant] <= 0:
                del self.per_tenant[session.tenant]

    def get(self, session_id: str, tenant: str) -> Session | None:
        """A tenant only ever finds its own sessions."""
        session = self.sessions.get(session_id)
        return session if session is not None and session.tenant == tenant else None

    def __len__(self) -> int:
        return len(self.sessions)

    def all(self) -> list[Session]:
        return list(self.sessions.values())


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
