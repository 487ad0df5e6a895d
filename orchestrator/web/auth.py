"""Who is asking: API keys map to tenants; the tenant decides the cache salt.

HTTP: `Authorization: Bearer <key>`. WebSocket (browsers cannot set headers): the subprotocol
`prefill.bearer.<key>`, or `api_key` in the first (`start`) frame. With no keys configured
everyone is the `anonymous` tenant, and the service only listens on loopback unless told.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

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


def is_admin_key(settings: Settings, key: str | None) -> bool:
    return bool(key) and any(
        hmac.compare_digest(known.encode(), str(key).encode()) for known in settings.admin_api_keys
    )


@dataclass(frozen=True)
class Audience:
    """Who reads the ops endpoints (`/status`, `/metrics`, `/health`): an admin (the
    service's figures) or one tenant (its own only)."""

    tenant: str | None  # None: an admin

    @property
    def admin(self) -> bool:
        return self.tenant is None


def keyless(settings: Settings) -> bool:
    """No key of any kind is configured (the default: loopback only unless told)."""
    return not settings.api_keys and not settings.admin_api_keys


def audience_for(settings: Settings, key: str | None, client_host: str | None) -> Audience:
    """An admin key, or a loopback client of a keyless service (its operator: the Host
    allow-list keeps rebinding pages out), reads the service's figures; any other caller
    its tenant's (401 for a missing or bad key where keys are configured)."""
    if is_admin_key(settings, key) or (keyless(settings) and is_loopback(client_host)):
        return Audience(None)
    return Audience(tenant_for_key(settings, key))


def check_admin(settings: Settings, key: str | None, client_host: str | None) -> None:
    """`GET /logs`: with keys configured an admin key (a tenant's gets 403); with none, a
    loopback client only."""
    if keyless(settings):
        if not is_loopback(client_host):
            raise Forbidden(
                "logs are served to loopback clients only unless PREFILL_ADMIN_API_KEYS is set",
                code="forbidden",
            )
        return
    if is_admin_key(settings, key):
        return
    if not key:
        raise Unauthorized("an admin API key is required: Authorization: Bearer <key>")
    if settings.api_keys:
        tenant_for_key(settings, key)  # 401 for a key that is no tenant's either
        raise Forbidden("this needs an admin API key, not a tenant's", code="admin_key_required")
    raise Unauthorized("the API key is not valid")


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
