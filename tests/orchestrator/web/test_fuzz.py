"""Fuzzing one live orchestrator (in front of the strict fake vLLM): hypothesis-generated
WebSocket frames, then schemathesis-generated HTTP requests from the app's own OpenAPI schema.

The server must never crash, never close a session over a bad frame, and never answer anything
but valid frames (a JSON object of a known `type`; errors with a code and a message) or, over
HTTP, anything in the 5xx range; afterwards a normal session and a normal request still work.
Hypothesis runs derandomized and without an example database, so every run sends the same
frames; the orchestrator and the fake run on uvicorn in threads, the clients are synchronous.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import GenerationMode
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from orchestrator.web.auth import SUBPROTOCOL_PREFIX
from testkit.fake_vllm import FakeVLLM
from testkit.serving import serve_in_thread

KEY = "fuzz-key"
SYSTEM = "You answer questions about a small shop's orders in one short sentence."
QUESTION = "Which customers placed more than three orders in the last quarter, and how many?"
BARRIER = json.dumps({"type": "barrier"})
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run
    database=None,  # and no .hypothesis/ folder in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Live:
    url: str
    app: FastAPI
    fake: FakeVLLM


@pytest.fixture(scope="module")
def live(tokenizer_dir: Path) -> Iterator[Live]:
    fake = FakeVLLM(strict=True)
    with serve_in_thread(fake) as fake_url:
        settings = Settings(
            enable_database=False,
            tokenizer=str(tokenizer_dir),
            vllm_url=fake_url,
            block_size=32,
            server_secret=SecretStr("fuzz-secret"),
            api_keys={KEY: "fuzzer"},
            typing_pause_ms=100,  # pause warm-ups happen in between, too
            warmups_per_second=1000.0,
            ws_frames_per_second=100_000.0,  # a fuzzer is no typist
            max_tokens=8,
            request_timeout_s=10.0,
        )
        app = create_app(settings)
        with serve_in_thread(app) as url:
            yield Live(url, app, fake)


# --- what the server may send ---------------------------------------------------------------

NUMBER = (int, float)
FRAME_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ready": {"session_id": str, "model": str, "block_size": int, "warmups": str},
    "warm": {
        "seq": int, "tokens": int, "cached_tokens": int, "ms": NUMBER, "submit_ready": bool,
    },
    "token": {"text": str},
    "done": {
        "seq": int, "ttft_ms": (*NUMBER, type(None)), "total_ms": NUMBER, "prompt_tokens": int,
        "cached_tokens": int, "completion_tokens": int, "finish_reason": (str, type(None)),
        "text": str, "warm_pieces": dict, "scorecard": dict,
    },
    "error": {"code": str, "message": str},
    "engine": {"ok": bool},
}  # fmt: skip


def checked_frame(raw: str | bytes) -> dict[str, Any]:
    """A server frame, or AssertionError saying what is wrong with it."""
    assert isinstance(raw, str), f"a binary frame: {raw!r}"
    frame = json.loads(raw)
    assert isinstance(frame, dict), f"not a JSON object: {raw}"
    assert frame.get("type") in FRAME_FIELDS, f"unknown type: {raw}"
    for name, kinds in FRAME_FIELDS[frame["type"]].items():
        assert isinstance(frame.get(name), kinds), f"{name} missing or mistyped: {raw}"
    if frame["type"] == "error":
        assert frame["code"], raw
        assert frame["message"], raw
    return frame


class FuzzSession:
    """One WebSocket session for a fuzzer: each frame is followed by a barrier (an unknown
    frame type), so every reply to it has arrived once the barrier's error has."""

    def __init__(self, url: str, *, start: dict[str, Any] | None = None) -> None:
        self.url = url.replace("http://", "ws://") + "/ws/session"
        self.start = start
        self.ws: ClientConnection | None = None
        self.connections = contextlib.ExitStack()
        self.sent = 0
        self.replies: dict[str, int] = {}

    def connect(self) -> ClientConnection:
        protocols = [Subprotocol(SUBPROTOCOL_PREFIX + KEY)]
        self.ws = self.connections.enter_context(
            connect(self.url, subprotocols=protocols, max_size=None, open_timeout=10)
        )
        if self.start is not None:
            self.ws.send(json.dumps(self.start))
            self.read_until_barrier()
        return self.ws

    def exchange(self, frame: str | bytes) -> None:
        ws = self.ws or self.connect()
        ws.send(frame)
        self.sent += 1
        self.read_until_barrier()

    def read_until_barrier(self) -> None:
        assert self.ws is not None
        self.ws.send(BARRIER)
        while True:
            try:
                frame = checked_frame(self.ws.recv(timeout=10))
            except ConnectionClosed as closed:
                self.ws = None  # the next example reconnects
                raise AssertionError(f"the server closed the session: {closed}") from None
            except TimeoutError:
                raise AssertionError("no answer to the barrier within 10 s") from None
            self.replies[frame["type"]] = self.replies.get(frame["type"], 0) + 1
            if frame["type"] == "error" and "'barrier'" in frame["message"]:
                return

    def close(self) -> None:
        self.connections.close()


# --- frames ---------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**200)
    | st.floats()
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
junk = (
    json_values
    | st.sampled_from([-1, 0, 2**64, 10**100, -(10**100), 1e308, "", "\x00", "\u202e\ufeff"])
    | st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=80)
)
texts = st.text(max_size=120) | st.sampled_from(["", " ", QUESTION, QUESTION[:40] + " "])
seqs = st.integers(min_value=0, max_value=10_000) | st.integers(min_value=0)
turns = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=60)}
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "system": st.none() | st.text(max_size=200) | st.just(SYSTEM),
        "history": st.lists(turns, max_size=3),
        "database": st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    },
)
params = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.none() | st.integers(min_value=1, max_value=16),
        "temperature": st.floats(min_value=0.0, max_value=2.0),
    },
)
valid_frames = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("start")},
        optional={
            "context": contexts,
            "params": params,
            "warmups": st.sampled_from(["keystroke", "context", "off"]),
            "api_key": st.none() | st.sampled_from([KEY, "someone-elses"]),
            "cache_namespace": st.none() | st.text(max_size=20),
        },
    ),
    st.fixed_dictionaries({"type": st.just("input"), "text": texts, "seq": seqs}),
    st.fixed_dictionaries({"type": st.just("submit"), "text": texts}, optional={"seq": seqs}),
    st.just({"type": "cancel"}),
)


@st.composite
def near_valid_frames(draw: st.DrawFn) -> dict[str, Any]:
    """A valid frame with up to three mistakes: a field dropped, added, or of the wrong type,
    at the top or one level down (context, params)."""
    frame: dict[str, Any] = copy.deepcopy(draw(valid_frames))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        target = frame
        nested = [key for key, value in frame.items() if isinstance(value, dict)]
        if draw(st.booleans()) and nested:
            target = frame[draw(st.sampled_from(nested))]
        mistake = draw(st.sampled_from(["drop", "add", "retype"]))
        if mistake == "add" or not target:
            target[draw(st.text(max_size=12) | st.sampled_from(["cache_salt", "type"]))] = draw(
                junk
            )
        elif mistake == "drop":
            del target[draw(st.sampled_from(sorted(target)))]
        else:
            target[draw(st.sampled_from(sorted(target)))] = draw(junk)
    return frame


def raw_frames() -> st.SearchStrategy[str | bytes]:
    near_json = st.lists(
        st.sampled_from(['{"type":', '"start"', '"input"', "{", "}", "[", "]", ",", ":", '"', "1"])
        | st.text(max_size=5),
        max_size=20,
    ).map("".join)
    return st.binary(max_size=300) | st.text(max_size=300) | near_json


def run_fuzzer(
    session: FuzzSession, frames: st.SearchStrategy[Any], examples: int, *, as_json: bool
) -> int:
    """Send `examples` generated frames; the number actually sent."""
    before = session.sent

    @settings(FUZZ, max_examples=examples)
    @given(frame=frames)
    def fuzz(frame: Any) -> None:
        session.exchange(json.dumps(frame) if as_json else frame)

    fuzz()
    return session.sent - before


def test_fuzzed_frames_never_break_the_server(live: Live) -> None:
    started = {"type": "start", "context": {"system": SYSTEM}}
    values = FuzzSession(live.url)
    near_valid = FuzzSession(live.url, start=started)
    raw = FuzzSession(live.url, start=started)
    try:
        sent = run_fuzzer(values, json_values, 700, as_json=True)
        sent += run_fuzzer(near_valid, near_valid_frames(), 900, as_json=True)
        sent += run_fuzzer(raw, raw_frames(), 600, as_json=False)
    finally:
        for session in (values, near_valid, raw):
            session.close()
    assert sent >= 2000
    # The near-valid frames reached the session itself, not only the parser.
    assert {"ready", "warm", "done"} <= set(near_valid.replies), near_valid.replies

    services = live.app.state.services
    deadline = time.monotonic() + 10
    while len(services.sessions) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(services.sessions) == 0
    assert_a_normal_session_works(live.url)


def assert_a_normal_session_works(url: str) -> None:
    """start, input word by word, a warm-up lands, submit: ready, warm, tokens, done with
    cache hits."""
    ws_url = url.replace("http://", "ws://") + "/ws/session"
    protocols = [Subprotocol(SUBPROTOCOL_PREFIX + KEY)]
    with connect(ws_url, subprotocols=protocols, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "start", "context": {"system": SYSTEM}}))
        words = QUESTION.split(" ")
        for seq in range(1, len(words) + 1):
            ws.send(json.dumps({"type": "input", "text": " ".join(words[:seq]), "seq": seq}))
        frames = [checked_frame(ws.recv(timeout=10))]
        while frames[-1]["type"] not in ("warm", "error"):
            frames.append(checked_frame(ws.recv(timeout=10)))
        ws.send(json.dumps({"type": "submit", "text": QUESTION, "seq": len(words)}))
        while frames[-1]["type"] not in ("done", "error"):
            frames.append(checked_frame(ws.recv(timeout=10)))
    kinds = [frame["type"] for frame in frames]
    assert kinds[0] == "ready", frames
    assert "error" not in kinds, frames
    assert "warm" in kinds, frames
    assert "token" in kinds, frames
    assert frames[-1]["finish_reason"] == "stop"
    assert frames[-1]["cached_tokens"] > 0


# --- the HTTP API, from its OpenAPI schema --------------------------------------------------

HEADERS = {"Authorization": f"Bearer {KEY}"}
OPERATIONS = [
    "GET /health",
    "GET /contexts",
    "GET /status",
    "GET /logs",
    "GET /v1/models",
    "POST /v1/completions",
    "POST /v1/chat/completions",
    "POST /v1/warm",
    "GET /v1/hints",
    "DELETE /v1/popularity",
    "DELETE /v1/popularity/{tenant}",
    "DELETE /v1/trace",
    "DELETE /v1/trace/{tenant}",
    "POST /v1/states",
    "GET /v1/states",
    "GET /v1/states/{state_id}",
    "DELETE /v1/states/{state_id}",
    "POST /v1/states/{state_id}/fork",
    "POST /v1/states/{state_id}/completions",
    "POST /v1/states/{state_id}/chat/completions",
]


@pytest.fixture(scope="module")
def api_schema(live: Live) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


def test_the_schema_has_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}  # type: ignore[union-attr]
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_generated_requests_never_get_a_5xx(
    live: Live, api_schema: schemathesis.BaseSchema, label: str
) -> None:
    method, path = label.split(" ")
    operation = api_schema[path][method]
    has_input = any(map(len, (operation.body, operation.query, operation.headers)))
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if has_input else []
    calls = 0
    for mode in modes or [GenerationMode.POSITIVE]:

        @settings(FUZZ, max_examples=100 if has_input else 5)
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case[Any]) -> None:
            nonlocal calls
            response = case.call(base_url=live.url, headers=HEADERS, timeout=10)
            calls += 1
            assert response.status_code < 500, (
                f"{response.status_code} {response.text[:500]}\n"
                f"{case.as_curl_command(headers=HEADERS)}"
            )

        call()
    assert calls >= (150 if has_input else 1)
    assert_a_normal_request_works(live.url)


def assert_a_normal_request_works(url: str) -> None:
    completion = {"model": "fake-model", "prompt": "Hello", "max_tokens": 2}
    reply = httpx.post(f"{url}/v1/completions", json=completion, headers=HEADERS, timeout=10)
    assert reply.status_code == 200
    assert reply.json()["usage"]["prompt_tokens"] == 5
    assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"
