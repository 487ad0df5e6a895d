"""The service's error hierarchy, written once, and the one envelope every error is sent in.

HTTP answers use the OpenAI shape `{"error": {"message", "type", "param", "code"}}`;
WebSocket sessions send the same facts as `{"type": "error", "code", "message"}` frames
(`core/frames.py`).
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


class UpstreamRejected(UpstreamError):
    """vLLM refused the request itself (4xx): the client's input, not the engine."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamStatus(UpstreamError):
    """vLLM answered a final request with an error status: passed on with that status, its
    error in the OpenAI envelope (`normalise_error`)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.body = normalise_error(status, body)
        error = self.body["error"]
        message = f"vLLM answered {status}: {error['message']}"  # a frame's; HTTP: vLLM's own
        super().__init__(message, param=error["param"], code=error["code"])
        self.status_code = status
        self.error_type = str(error["type"])

    def envelope(self) -> dict[str, Any]:
        return self.body


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


def normalise_error(status: int, body: bytes) -> dict[str, Any]:
    """vLLM's error body (integer codes, older shapes, or not JSON) in the OpenAI envelope."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    fallback = UPSTREAM_STATUS_CODES.get(status, "upstream_error")
    if not isinstance(error, dict):
        text = body.decode(errors="replace").strip()[:500] or f"vLLM answered {status}"
        return error_envelope(text, "upstream_error", None, fallback)
    code = error.get("code")
    return error_envelope(
        str(error.get("message") or error.get("detail") or f"vLLM answered {status}"),
        "invalid_request_error" if 400 <= status < 500 else "upstream_error",
        error.get("param"),
        code if isinstance(code, str) else fallback,
    )
