"""Per-tenant `cache_salt`: derived on the server, never taken from a client.

vLLM mixes the salt into the first block's hash, so only requests with the same salt share
cached blocks; one tenant cannot probe another's half-typed text through cache timing.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr


def tenant_salt(secret: SecretStr, tenant: str) -> str:
    digest = hmac.new(
        secret.get_secret_value().encode(), f"tenant:{tenant}".encode(), hashlib.sha256
    )
    return digest.hexdigest()
