"""Which names the service answers to: the `Host` allow-list and the WebSocket `Origin` check.

A page on a hostile domain whose name re-binds to 127.0.0.1 is same-origin with a service on
loopback, and the browser sends its own name as `Host`. Answering only the names the service
is known by (the loopback names, the configured host, `PREFILL_ALLOWED_HOSTS`) closes that:
any other `Host` gets 400 before a route runs, on HTTP and on the WebSocket handshake.

The Origin of a WebSocket handshake is compared with the same list (and the port the service
listens on) or with `PREFILL_ALLOWED_ORIGINS`, never with the request's own `Host`, which
the page's author chooses.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.errors import Forbidden, InvalidHost, ServiceError
from orchestrator.settings import Settings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # listening on every interface names no host
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def trusted_hosts(settings: Settings) -> tuple[str, ...]:
    """The names (lowercase, IPv6 without brackets) a request's `Host` may carry; an entry
    may be a pattern (`*.example.com`: its subdomains, or `*`: any)."""
    names = [*LOOPBACK_NAMES, *(name.strip().lower() for name in settings.allowed_hosts)]
    if settings.host.lower() not in WILDCARD_HOSTS:
        names.append(settings.host.lower())
    return tuple(dict.fromkeys(name.strip("[]") for name in names if name))


def host_name(value: str) -> str | None:
    """The name of a `Host` header or an Origin's authority: lowercase, no port, no brackets;
    None when it is not one."""
    try:
        parts = urlsplit(f"//{value}")
        name, _ = parts.hostname, parts.port  # .port raises on a bad port
    except ValueError:
        return None
    if not name or parts.username is not None or parts.path or parts.query:
        return None
    return name


def name_allowed(name: str, allowed: tuple[str, ...], *, for_origin: bool = False) -> bool:
    """`name` is on the list; a bare `*` lets any Host through but never vouches for an Origin."""
    for pattern in allowed:
        if pattern == "*":
            if not for_origin:
                return True
        elif pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return True
        elif name == pattern:
            return True
    return False


def origin_allowed(origin: str, settings: Settings, port: int) -> bool:
    """A browser's Origin: one of `allowed_origins`, or http(s) on a trusted name at the port
    the service listens on."""
    if origin in settings.allowed_origins:
        return True
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.path or not parts.hostname:
        return False
    allowed = trusted_hosts(settings)
    return origin_port == port and name_allowed(parts.hostname, allowed, for_origin=True)


def check_origin(origin: str | None, settings: Settings, port: int) -> None:
    """Browsers send `Origin` (other clients none): it must be allowed."""
    if origin is not None and not origin_allowed(origin, settings, port):
        raise Forbidden(f"origin {origin} is not allowed")


def listening_port(scope: Scope, settings: Settings) -> int:
    """The port of the socket the request came in on (not what its `Host` says)."""
    server = scope.get("server")
    return int(server[1]) if server and server[1] is not None else settings.port


class TrustedHosts:
    """ASGI middleware: a request (HTTP or WebSocket) whose `Host` is not a trusted name gets
    400 `invalid_host` in the error envelope (a WebSocket: as its denial response, or a 1008
    close where the server cannot send one)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.allowed = trusted_hosts(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        name = host_name(raw)
        if name is not None and name_allowed(name, self.allowed):
            await self.app(scope, receive, send)
            return
        error = InvalidHost(f"host {raw[:100]!r} is not allowed: see PREFILL_ALLOWED_HOSTS")
        if scope["type"] == "http":
            await send_error(send, error, "http.")
        elif "websocket.http.response" in scope.get("extensions", {}):
            await receive()  # websocket.connect
            await send_error(send, error, "websocket.http.")
        else:
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})


async def send_error(send: Send, error: ServiceError, prefix: str) -> None:
    body = json.dumps(error.envelope()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    start = {"type": f"{prefix}response.start", "status": error.status_code, "headers": headers}
    await send(start)
    await send({"type": f"{prefix}response.body", "body": body})
