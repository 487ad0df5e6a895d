"""Who is asking: API keys map to tenants; the tenant decides the cache salt.

HTTP: `Authorization: Bearer <key>`. WebSocket (browsers cannot set headers): the subprotocol
`prefill.bearer.<key>`, or `api_key` in the first (`start`) frame. With no keys configured
everyone is the `anonymous` tenant, and the service only listens on loopback unless told.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from orchestrator.errors import Forbidden, Unauthorized
from orchestrator.settings import Settings

ANONYMOUS_TENANT = "anonymous"
SUBPROTOCOL_PREFIX = "prefill.bearer."


def tenant_for_key(settings: Settings, key: str | None) -> str:
    """The tenant of `key`; anonymous when no keys are configured."""
    if not settings.api_keys:
        return ANONYMOUS_TENANT
    if not key:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    for known, tenant in settings.api_keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):
            return tenant
    raise Unauthorized("the API key is not valid")


def bearer(connection: HTTPConnection) -> str | None:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def subprotocol_key(connection: HTTPConnection) -> tuple[str | None, str | None]:
    """(key, the subprotocol to echo back) from `Sec-WebSocket-Protocol`."""
    offered = connection.headers.get("sec-websocket-protocol", "")
    for protocol in (item.strip() for item in offered.split(",")):
        if protocol.startswith(SUBPROTOCOL_PREFIX):
            return protocol[len(SUBPROTOCOL_PREFIX) :], protocol
    return None, None


def check_origin(connection: HTTPConnection, settings: Settings) -> None:
    """Browsers send `Origin`: accept the same origin or a configured one (non-browser
    clients send none)."""
    origin = connection.headers.get("origin")
    if origin is None or origin in settings.allowed_origins:
        return
    if urlsplit(origin).netloc and urlsplit(origin).netloc == connection.headers.get("host"):
        return
    raise Forbidden(f"origin {origin} is not allowed")
