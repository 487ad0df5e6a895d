"""The service's error hierarchy, written once, and the one envelope every error is sent in.

HTTP answers use the OpenAI shape `{"error": {"message", "type", "param", "code"}}`;
WebSocket sessions send the same facts as `{"type": "error", "code", "message", "status"}`
frames (`core/frames.py`). vLLM's error answers, whatever their shape, are read in one place,
`upstream_error`, for every path (the passthrough, a session's finals on either channel, a
speculation, the client's own calls): a vLLM 400 is a 400 everywhere.
"""

from __future__ import annotations

import json
from typing import Any


class ServiceError(Exception):
    """Base of every error the service reports to a client."""

    status_code = 500
    error_type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.message, self.error_type, self.param, self.code)


class InvalidRequest(ServiceError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class InvalidHost(InvalidRequest):
    """The request's `Host` is not a name the service answers to (DNS rebinding)."""

    code = "invalid_host"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    code = "payload_too_large"


class Unauthorized(ServiceError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(ServiceError):
    status_code = 403
    error_type = "permission_error"
    code = "forbidden_origin"


class RateLimited(ServiceError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limited"


class UpstreamError(ServiceError):
    """vLLM answered with an error, or not at all."""

    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamStatus(UpstreamError):
    """vLLM answered with an error status (or an error event in a stream): the client gets
    that status and vLLM's error in the OpenAI envelope, on every path (`upstream_error`)."""

    def __init__(self, status: int, envelope: dict[str, Any], message: str) -> None:
        error = envelope["error"]
        super().__init__(message, param=error["param"], code=error["code"])
        self.status_code = status
        self.error_type = str(error["type"])
        self.body = envelope

    def envelope(self) -> dict[str, Any]:
        return self.body  # vLLM's own message; a frame's `message` says it is vLLM's


class UpstreamRejected(UpstreamStatus):
    """vLLM refused the request itself (a 4xx other than 429): the client's input, not the
    engine (a warm-up refused so does not make the engine look unwell)."""


class DatabaseError(ServiceError):
    status_code = 503
    error_type = "database_error"
    code = "database_error"


class SetupError(Exception):
    """Set-up failed (model, port, engine, database): the command line prints one line and exits."""


def error_envelope(
    message: str, error_type: str, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


UPSTREAM_STATUS_CODES = {
    400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    429: "rate_limited",
}  # fmt: skip
ERROR_STATUSES = range(400, 600)


def upstream_error(status: int | None, body: bytes | str) -> UpstreamStatus:
    """vLLM's error answer as the service's error: the one reading of vLLM's error bodies.

    `status` is the response's; None for an error event in the middle of a stream, whose
    status is the body's integer `code` (vLLM's) or 500. The body may be vLLM's
    `{"error": {...}}`, an older flat shape, FastAPI's `{"detail": ...}` or not JSON at all.
    """
    raw = body.encode() if isinstance(body, str) else body
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    said = f"vLLM answered {status}"
    if status is None:
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and code in ERROR_STATUSES else 500
        said = f"vLLM failed mid-stream ({status})"
    envelope = error_body(status, error, raw)
    message = f"{said}: {envelope['error']['message']}"
    kind = UpstreamRejected if 400 <= status < 500 and status != 429 else UpstreamStatus
    return kind(status, envelope, message)


def error_body(status: int, error: Any, raw: bytes) -> dict[str, Any]:
    """vLLM's error (integer codes, older shapes, or not JSON) in the OpenAI envelope."""
    fallback = UPSTREAM_STATUS_CODES.get(status, "upstream_error")
    if not isinstance(error, dict):
        text = raw.decode(errors="replace").strip()[:500] or f"vLLM answered {status}"
        return error_envelope(text, "upstream_error", None, fallback)
    code = error.get("code")
    return error_envelope(
        str(error.get("message") or error.get("detail") or f"vLLM answered {status}"),
        "invalid_request_error" if 400 <= status < 500 else "upstream_error",
        error.get("param"),
        code if isinstance(code, str) else fallback,
    )
