"""Hardening against a fake vLLM: API keys and tenants, Origin, settings, and vLLM going away
(the limits are `test_limits.py`'s).

Same set-up as `test_session.py`: the orchestrator and a (strict: it checks bodies as vLLM does)
fake vLLM run on uvicorn in the test's own event loop, clients are real `websockets` clients.
One orchestrator with two API keys serves the tests that need no other settings; a test that
needs other limits starts its own. The fault tests give the orchestrator a fake that can be
killed and started again on the same port, and a transport that counts what it sends upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from websockets.exceptions import InvalidStatus

from orchestrator.settings import Settings
from testkit.fake_vllm import FakeVLLM
from testkit.serving import Upstream
from tests.fakes import (
    CountingTransport,
    SessionClient,
    session_tasks,
    wait_until,
)
from tests.helpers import QUESTION, SYSTEM
from tests.sessions import Defaults, StartApp, salt, started

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
ALLOWED_ORIGIN = "https://typing.example"
LONG_TEXT = " ".join([QUESTION] * 3)  # typed for 2.5 s: about ten more blocks
POLICY_VIOLATION, MESSAGE_TOO_BIG = 1008, 1009


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    """Two tenants' keys and one allowed Origin; sessions connect with tenant-a's key."""
    settings = {"api_keys": KEYS, "allowed_origins": [ALLOWED_ORIGIN]}
    return Defaults(settings=settings, key="key-a", strict_fake=True)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The OpenAI error envelope, exactly: `{"error": {"message", "type", "param", "code"}}`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"], body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


async def closed(client: SessionClient) -> tuple[int | None, str]:
    """Wait for the server to close `client`: (close code, reason)."""
    await wait_until(lambda: client.closed, what="the server to close the socket")
    return client.ws.close_code, client.ws.close_reason or ""


# --- API keys -------------------------------------------------------------------------------

COMPLETION = {"model": "fake-model", "prompt": [1, 2, 3, 4], "max_tokens": 2}
HTTP_CALLS = [
    ("GET", "/v1/models", None),
    ("POST", "/v1/completions", COMPLETION),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/warm", {"prompt": list(range(100))}),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth("not-a-key"),
        auth("key-a-but-longer"),
        {"Authorization": "Basic key-a"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "unknown", "prefix", "not-bearer", "empty"],
)
async def test_http_without_a_valid_key_is_401_in_the_openai_envelope(
    start_app: StartApp, fake: FakeVLLM, headers: dict[str, str]
) -> None:
    app = await start_app()
    http = await app.http()
    for method, path, body in HTTP_CALLS:
        response = await http.request(method, path, json=body, headers=headers)
        error = assert_envelope(response, 401, "invalid_api_key")
        assert error["type"] == "authentication_error"
    assert fake.completions == []
    assert fake.gets == []


async def test_http_with_a_valid_key_passes(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app()
    http = await app.http()
    for key in KEYS:
        models = await http.get("/v1/models", headers=auth(key))
        assert models.status_code == 200
        assert models.json()["data"][0]["id"] == "fake-model"
        completion = await http.post("/v1/completions", json=COMPLETION, headers=auth(key))
        assert completion.status_code == 200, completion.text
    assert [r.body["cache_salt"] for r in fake.completions] == [salt("tenant-a"), salt("tenant-b")]
    health = await http.get("/health")  # no key needed for health
    assert health.status_code == 200


async def test_ws_key_as_subprotocol_is_accepted_and_echoed(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await app.session(key="key-a")
    assert client.ws.subprotocol == "prefill.bearer.key-a"
    await client.send(type="start", context={"system": SYSTEM})
    await client.next("ready")
    await client.next("warm")
    assert fake.warmups[0].body["cache_salt"] == salt("tenant-a")


async def test_ws_key_in_the_start_frame_is_accepted(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app()
    client = await app.session()
    assert client.ws.subprotocol is None
    await client.send(type="start", api_key="key-b", context={"system": SYSTEM})
    await client.next("ready")
    await client.send(type="submit", text=QUESTION)
    assert (await client.next("done"))["finish_reason"] == "stop"
    assert {r.body["cache_salt"] for r in fake.completions} == {salt("tenant-b")}


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ({"type": "start"}, "API key is required"),
        ({"type": "start", "api_key": "not-a-key"}, "not valid"),
        ({"type": "start", "api_key": ""}, "API key is required"),
        ({"type": "input", "text": "hi", "seq": 1}, "API key is required"),
    ],
    ids=["no-key", "bad-key", "empty-key", "input-first"],
)
async def test_ws_without_a_valid_key_gets_an_error_and_close_1008(
    start_app: StartApp, fake: FakeVLLM, first: dict[str, Any], reason: str
) -> None:
    app = await start_app()
    client = await app.session()
    await client.send(**first)
    error = await client.next("error")
    assert error["code"] == "invalid_api_key"
    code, close_reason = await closed(client)
    assert code == POLICY_VIOLATION
    assert reason in close_reason
    assert len(app.services.sessions) == 0
    assert fake.completions == []


async def test_ws_bad_key_as_subprotocol_is_refused_at_the_handshake(start_app: StartApp) -> None:
    app = await start_app()
    with pytest.raises(InvalidStatus) as refused:
        await app.session(key="not-a-key")
    # Refused before accept: an HTTP answer to the handshake, with the one error envelope.
    assert refused.value.response.status_code == 401
    error = json.loads(refused.value.response.body)["error"]
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "authentication_error"
    assert len(app.services.sessions) == 0


# --- Origin ---------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["same", ALLOWED_ORIGIN, None], ids=["same", "allowed", "none"])
async def test_ws_accepts_the_same_an_allowed_or_no_origin(
    start_app: StartApp, origin: str | None
) -> None:
    app = await start_app()
    client = await started(app, origin=app.url if origin == "same" else origin)
    assert client.of_type("ready")


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://127.0.0.1:1", "null", ALLOWED_ORIGIN + ".evil.example"],
)
async def test_ws_refuses_a_foreign_origin(
    start_app: StartApp, fake: FakeVLLM, origin: str
) -> None:
    app = await start_app()
    for key in ("key-a", None):  # the Origin check comes before the key
        with pytest.raises(InvalidStatus) as refused:
            await app.session(key=key, origin=origin)
        assert refused.value.response.status_code == 403
        assert json.loads(refused.value.response.body)["error"]["code"] == "forbidden_origin"
    assert len(app.services.sessions) == 0


# --- tenants --------------------------------------------------------------------------------


async def test_tenants_warm_under_different_salts_and_never_share_blocks(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    for key in ("key-a", "key-b", "key-a"):  # the same context, one after the other
        client = await started(app, key=key)
        await client.next("warm")

    first_a, first_b, second_a = fake.warmups
    assert first_a.prompt == first_b.prompt == second_a.prompt
    assert first_a.body["cache_salt"] == second_a.body["cache_salt"] == salt("tenant-a")
    assert first_b.body["cache_salt"] == salt("tenant-b") != salt("tenant-a")
    cached = [w.usage["prompt_tokens_details"]["cached_tokens"] for w in fake.warmups if w.usage]
    assert cached[:2] == [0, 0]  # B found nothing of A's
    assert cached[2] > 0  # A found its own


async def test_another_tenants_session_id_is_an_unknown_session(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await started(app, key="key-a", cache_namespace="run-a")
    session_id = client.of_type("ready")[0]["session_id"]
    http = await app.http()

    for key, session in (("key-b", session_id), ("key-a", "0123456789abcdef")):
        headers = {**auth(key), "X-Session-Id": session}
        response = await http.post("/v1/completions", json=COMPLETION, headers=headers)
        error = assert_envelope(response, 400, "unknown_session")
        assert error["param"] == "x-session-id"
        warm = await http.post("/v1/warm", json={"prompt": list(range(80))}, headers=headers)
        assert_envelope(warm, 400, "unknown_session")
    assert [r for r in fake.completions if r.body.get("prompt") == COMPLETION["prompt"]] == []

    headers = {**auth("key-a"), "X-Session-Id": session_id}
    response = await http.post("/v1/completions", json=COMPLETION, headers=headers)
    assert response.status_code == 200
    assert fake.completions[-1].body["cache_salt"] == salt("tenant-a", "run-a")


# --- settings -------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PREFILL_HOST", "PREFILL_API_KEYS", "PREFILL_ALLOW_REMOTE_WITHOUT_KEYS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_a_non_loopback_host_without_keys_refuses_to_build(host: str) -> None:
    with pytest.raises(ValidationError, match="not loopback"):
        Settings(host=host, enable_database=False)
    assert Settings(host=host, api_keys=KEYS).api_keys == KEYS
    assert Settings(host=host, allow_remote_without_keys=True).host == host


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_a_loopback_host_needs_no_keys(host: str) -> None:
    assert Settings(host=host).api_keys == {}


# --- vLLM goes away -------------------------------------------------------------------------


async def test_vllm_down_at_start_is_an_error_frame_and_degraded_health(
    start_app: StartApp,
) -> None:
    vllm = FakeVLLM(strict=True)
    upstream = Upstream(vllm)  # not started yet
    app = await start_app(upstream=upstream.url)
    app.stack.push_async_callback(upstream.stop)
    http = await app.http()
    health = await http.get("/health")  # no key: whether it is up, nothing more
    assert health.status_code == 503
    assert health.json() == {"status": "degraded"}

    client = await app.session(key="key-a")
    await client.send(type="start", context={"system": SYSTEM})
    error = await client.next("error")
    assert error["code"] == "upstream_unavailable"
    assert client.of_type("ready") == []

    await upstream.start()  # the same session starts once vLLM is there
    await client.send(type="start", context={"system": SYSTEM})
    await client.next("ready")
    await client.next("warm")
    assert (await http.get("/health")).json()["status"] == "ok"


def describe(tasks: set[asyncio.Task[Any]]) -> list[str]:
    return [getattr(task.get_coro(), "__qualname__", repr(task)) for task in tasks]


async def test_vllm_dies_mid_session_and_comes_back(start_app: StartApp) -> None:
    vllm = FakeVLLM(strict=True)
    upstream = Upstream(vllm)
    await upstream.start()
    transport = CountingTransport()
    app = await start_app(upstream=upstream.url, transport=transport)
    app.stack.push_async_callback(upstream.stop)
    http = await app.http(over_the_port=True)
    await http.get("/health")  # the client's own connection is part of the baseline
    baseline = asyncio.all_tasks()

    typists = [await started(app, key=key) for key in ("key-a", "key-a", "key-b")]
    for client in typists:
        await client.next("warm")
    idle = await started(app, key="key-a")  # warmed, then types nothing while vLLM is down
    idle_warm = await idle.next("warm")
    writer = await started(app, key="key-b", warmups="off")
    vllm.stream_hang = True
    await writer.send(type="submit", text="Tell me a long story.")
    await writer.next("token")
    clients = [*typists, idle, writer]

    # vLLM dies: the generation ends with an error, every session hears within ~1 s.
    killed = time.monotonic()
    await upstream.kill()
    stream_error = await writer.next("error", lambda frame: "stream" in frame["message"])
    assert stream_error["code"] == "upstream_unavailable"
    for client in clients:
        error = await client.next("error", lambda frame: "paused" in frame["message"], within=2)
        assert error["code"] == "upstream_unavailable"
    assert time.monotonic() - killed < 1.5
    assert writer.of_type("done") == []
    health = await http.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"

    # Typing goes on while it is down: warm-ups back off instead of hammering a dead port.
    seq, typing_s, key_interval_s = 0, 2.5, 0.05
    for seq in range(1, int(typing_s / key_interval_s) + 1):
        for client in typists:
            await client.send(type="input", text=LONG_TEXT[: 8 * seq], seq=seq)
        await asyncio.sleep(key_interval_s)
    attempts = transport.warmups_between(killed, time.monotonic())
    assert attempts, "the typists' text never asked for a warm-up"
    assert all(sent.failed for sent in attempts)
    # Without a back-off every keystroke of every typist would try (150); with it, one try per
    # typist at the end of each back-off (0.25, 0.5, 1, 2 s), plus the few before the watcher.
    assert len(attempts) <= 5 * len(typists), [round(s.at - killed, 3) for s in attempts]

    # vLLM is back on the same port (restarted: its cache is empty): sessions hear it, warm-ups
    # resume at once without waiting out their back-off, and a new keystroke is warmed at once.
    await upstream.start()
    for client in clients:
        assert await client.next("engine", within=2) == {"type": "engine", "ok": True}
    assert (await http.get("/health")).json()["status"] == "ok"
    for client in typists[1:]:  # without a keystroke
        await client.next("warm", lambda frame: frame["seq"] == seq, within=2)
    # What was warmed before the restart is gone: the idle session warms its prompt again.
    rewarm = await idle.next("warm", lambda frame: frame["seq"] == idle_warm["seq"], within=2)
    assert rewarm["tokens"] == idle_warm["tokens"]
    before = len(vllm.warmups)
    await typists[0].send(type="input", text=LONG_TEXT, seq=seq + 1)
    warm = await typists[0].next("warm", lambda frame: frame["seq"] == seq + 1, within=3)
    assert warm["tokens"] in [len(sent.prompt) for sent in vllm.warmups[before:]]
    vllm.stream_hang = False
    await writer.send(type="submit", text="Tell me a short one.")
    assert (await writer.next("done"))["finish_reason"] == "stop"

    # Everyone leaves: nothing is left behind.
    for client in clients:
        await client.ws.close()
    services = app.services
    await wait_until(lambda: len(services.sessions) == 0, what="the registry to empty")
    await wait_until(lambda: not session_tasks(), what="the sessions' tasks to end")

    def extra_tasks() -> int:
        return len(asyncio.all_tasks()) - len(baseline)

    with contextlib.suppress(AssertionError):
        await wait_until(lambda: extra_tasks() <= 0, what="the task count to return")
    assert extra_tasks() <= 0, describe(asyncio.all_tasks() - baseline)
    await wait_until(lambda: transport.busy_connections == 0, what="the pool to be idle")
    await wait_until(  # and the fake holds no connection but the pool's idle keep-alive ones
        lambda: upstream.open_connections == transport.open_connections,
        what="the fake's connections to match the pool's",
    )
    assert vllm.streams_open == vllm.warm_in_flight == 0
    assert services.engine.in_flight == 0
