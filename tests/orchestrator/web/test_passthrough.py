"""The passthrough's protocol edge cases, against an upstream that records what it received."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from orchestrator.core.engine.salt import routing_key, tenant_salt
from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from tests.helpers import sse_data


class RecordingUpstream:
    """Answers like vLLM; keeps every request it was sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.reply: httpx.Response | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.reply is not None:
            return self.reply
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "fake"}]})
        body = json.loads(request.content)
        if body.get("stream"):
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream", "connection": "keep-alive"},
                content=sse(["data: " + json.dumps({"choices": [{"text": "hi"}]}), "data: [DONE]"]),
            )
        usage = {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0}}
        return httpx.Response(
            200,
            headers={"x-upstream": "yes", "transfer-encoding": "chunked", "keep-alive": "t=5"},
            json={"choices": [{"text": "hi"}], "usage": usage},
        )

    def body(self, index: int = -1) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.requests[index].content)
        return parsed


async def sse(lines: list[str]) -> AsyncIterator[bytes]:
    for line in lines:
        yield (line + "\n\n").encode()


@pytest.fixture
def upstream() -> RecordingUpstream:
    return RecordingUpstream()


@pytest.fixture
def settings() -> Settings:
    return Settings(enable_database=False, load_tokenizer=False, http_max_body_bytes=4096)


@pytest.fixture
def client(upstream: RecordingUpstream, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, upstream_transport=httpx.MockTransport(upstream))
    with TestClient(app, base_url="http://localhost") as test_client:
        yield test_client


def test_the_server_sets_the_salt_and_priority(
    client: TestClient, upstream: RecordingUpstream, settings: Settings
) -> None:
    reply = client.post(
        "/v1/completions",
        json={"model": "fake", "prompt": "x", "cache_salt": "mine", "priority": 3},
    )
    assert reply.status_code == 200
    sent = upstream.body()
    assert sent["cache_salt"] == tenant_salt(settings.server_secret, "anonymous")
    assert sent["cache_salt"] != "mine"
    assert sent["priority"] == 3  # a client may lower itself; warm-ups use their own


def test_a_client_cannot_jump_ahead_of_final_requests(
    client: TestClient, upstream: RecordingUpstream, settings: Settings
) -> None:
    client.post("/v1/completions", json={"model": "fake", "prompt": "x", "priority": -100})
    assert upstream.body()["priority"] == settings.final_priority
    client.post("/v1/completions", json={"model": "fake", "prompt": "x", "priority": "high"})
    assert upstream.body()["priority"] == settings.final_priority


def test_hop_by_hop_headers_are_filtered_both_ways(
    client: TestClient, upstream: RecordingUpstream
) -> None:
    reply = client.post(
        "/v1/completions",
        json={"model": "fake", "prompt": "x"},
        headers={"connection": "keep-alive, x-secret", "te": "trailers", "x-custom": "1"},
    )
    sent = upstream.requests[-1].headers
    assert "te" not in sent
    assert sent["x-custom"] == "1"
    assert reply.headers["x-upstream"] == "yes"
    assert "keep-alive" not in reply.headers
    assert (
        reply.headers.get("transfer-encoding") != "chunked" or "content-length" not in reply.headers
    )


def test_request_id_is_carried_or_created(client: TestClient, upstream: RecordingUpstream) -> None:
    given = client.post(
        "/v1/completions", json={"model": "fake", "prompt": "x"}, headers={"x-request-id": "r-1"}
    )
    assert given.headers["x-request-id"] == "r-1"
    assert upstream.requests[-1].headers["x-request-id"] == "r-1"
    created = client.post("/v1/completions", json={"model": "fake", "prompt": "x"})
    assert created.headers["x-request-id"].startswith("prefill-")
    assert upstream.requests[-1].headers["x-request-id"] == created.headers["x-request-id"]


def test_streams_pass_through(client: TestClient) -> None:
    with client.stream(
        "POST", "/v1/completions", json={"model": "fake", "prompt": "x", "stream": True}
    ) as reply:
        assert reply.status_code == 200
        lines = [line for line in reply.iter_lines() if line]
    assert lines[0].startswith("data: ")
    assert json.loads(lines[0][6:])["choices"][0]["text"] == "hi"
    assert lines[-1] == "data: [DONE]"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"error": {"message": "nope", "type": "NotFoundError", "param": "model", "code": 404}},
         404, "not_found"),
        ({"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}, 400,
         "invalid_request"),
        ({"detail": "too many"}, 429, "rate_limited"),
    ],
)  # fmt: skip
def test_upstream_errors_come_in_the_openai_envelope(
    client: TestClient, upstream: RecordingUpstream, body: dict[str, Any], status: int, code: str
) -> None:
    upstream.reply = httpx.Response(status, json=body)
    reply = client.post("/v1/chat/completions", json={"model": "fake", "messages": []})
    assert reply.status_code == status
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]


def test_an_error_in_the_middle_of_a_stream_is_an_sse_error_event(
    client: TestClient, upstream: RecordingUpstream
) -> None:
    failure = {"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}
    upstream.reply = httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=sse(['data: {"choices": [{"text": "a"}]}', "data: " + json.dumps(failure)]),
    )
    with client.stream(
        "POST", "/v1/completions", json={"model": "fake", "prompt": "x", "stream": True}
    ) as reply:
        events = [json.loads(data) for data in sse_data(reply) if data.startswith("{")]
    assert events[-1]["error"]["message"] == "engine died"
    assert events[-1]["error"]["code"] == "upstream_error"


def test_unreachable_upstream_is_503_in_the_envelope(settings: Settings) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    app = create_app(settings, upstream_transport=httpx.MockTransport(refuse))
    with TestClient(app, base_url="http://localhost") as test_client:
        reply = test_client.post("/v1/completions", json={"model": "fake", "prompt": "x"})
        health = test_client.get("/health")
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "upstream_unavailable"
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"


def test_bad_bodies_get_400_and_413(client: TestClient, upstream: RecordingUpstream) -> None:
    not_json = client.post(
        "/v1/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    too_big = client.post("/v1/completions", json={"prompt": "x" * 5000})
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"
    assert upstream.requests == []  # neither reached vLLM


def test_unknown_session_header_is_refused(client: TestClient, upstream: RecordingUpstream) -> None:
    reply = client.post(
        "/v1/completions", json={"model": "fake", "prompt": "x"}, headers={"x-session-id": "nope"}
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "unknown_session"
    assert upstream.requests == []


def test_requests_go_upstream_with_a_server_derived_routing_key(
    client: TestClient, upstream: RecordingUpstream, settings: Settings
) -> None:
    """Replicas behind a router keep a tenant's untied requests together by `X-Session-ID`;
    the key is derived on the server, never the salt, and never what the client sent."""
    client.post("/v1/completions", json={"model": "fake", "prompt": "x"})
    route = upstream.requests[-1].headers["x-session-id"]
    assert route == routing_key(settings.server_secret, "anonymous")
    assert route != tenant_salt(settings.server_secret, "anonymous")
    assert routing_key(settings.server_secret, "other") != route
    assert routing_key(settings.server_secret, "anonymous", "session") != route
