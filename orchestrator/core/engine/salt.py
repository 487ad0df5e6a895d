"""Per-tenant `cache_salt`: derived on the server, never taken from a client.

vLLM mixes the salt into the first block's hash, so only requests with the same salt share
cached blocks; one tenant cannot probe another's half-typed text through cache timing.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

ROUTE_HEADER = "X-Session-ID"  # what vllm-router's consistent_hash policy keys on first


def routing_key(secret: SecretStr, tenant: str, session_id: str | None = None) -> str:
    """The key that sends a session's requests (or, without one, a tenant's untied ones) to
    the same replica behind a router: derived on the server, so no client can aim at the
    replica, or learn the key, of another tenant's session."""
    message = f"route:{tenant}\x00session:{session_id or ''}"
    digest = hmac.new(secret.get_secret_value().encode(), message.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def tenant_salt(secret: SecretStr, tenant: str, namespace: str | None = None) -> str:
    """HMAC(secret, tenant, namespace): a client may pick a namespace to separate its own runs
    (each eval case takes a fresh one), but it can never reach another tenant's salt."""
    message = f"tenant:{tenant}\x00namespace:{namespace or ''}"
    return hmac.new(
        secret.get_secret_value().encode(), message.encode(), hashlib.sha256
    ).hexdigest()
