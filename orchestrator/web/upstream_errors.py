"""vLLM's errors in the OpenAI envelope, for the passthrough and a session's HTTP final alike."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.errors import UpstreamError, error_envelope

STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found"}


def normalise_error(status: int, body: bytes) -> dict[str, Any]:
    """vLLM's error body (integer codes, older shapes, or not JSON) in the OpenAI envelope."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        text = body.decode(errors="replace").strip()[:500] or f"vLLM answered {status}"
        return error_envelope(text, "upstream_error", None, code_for(status))
    code = error.get("code")
    return error_envelope(
        str(error.get("message") or error.get("detail") or f"vLLM answered {status}"),
        "invalid_request_error" if 400 <= status < 500 else "upstream_error",
        error.get("param"),
        code if isinstance(code, str) else code_for(status),
    )


def code_for(status: int) -> str:
    if status in STATUS_CODES:
        return STATUS_CODES[status]
    return "rate_limited" if status == 429 else "upstream_error"


def dropped_stream_event(error: Exception) -> bytes:
    """The SSE events that end a stream vLLM dropped: an OpenAI-shaped error, then [DONE]."""
    failure = UpstreamError(f"vLLM dropped the stream: {error or type(error).__name__}")
    return f"data: {json.dumps(failure.envelope())}\n\ndata: [DONE]\n\n".encode()
