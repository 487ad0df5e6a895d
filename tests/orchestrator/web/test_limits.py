"""The limits of the service under abuse: frame size and rate, sessions per tenant and in all,
inputs over the model's context, HTTP body size, warm-ups in flight, and warm-ups vLLM rejects.
The set-up (two API keys, a strict fake) is `test_hardening.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator

from orchestrator.core.engine.salt import tenant_salt
from testkit.fake_vllm import FakeVLLM
from tests.fakes import wait_until
from tests.helpers import QUESTION, SETTLE_S, SYSTEM
from tests.orchestrator.web.test_hardening import (
    COMPLETION,
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    assert_envelope,
    auth,
    closed,
    orchestrator_defaults,
)
from tests.sessions import StartApp, started

__all__ = ["orchestrator_defaults"]  # test_hardening.py's set-up, for these tests too

# --- limits ---------------------------------------------------------------------------------


async def test_a_frame_over_the_size_limit_closes_with_1009(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(ws_max_message_bytes=2048)
    other = await started(app)
    client = await started(app)
    await client.send(type="input", text="x" * 2100, seq=1)
    code, reason = await closed(client)
    assert code == MESSAGE_TOO_BIG
    assert "2048" in reason

    first = await app.session()  # the key in an oversized first frame
    await first.send(type="start", api_key="key-a", context={"system": "y" * 3000})
    assert (await closed(first))[0] == MESSAGE_TOO_BIG

    await wait_until(lambda: len(app.services.sessions) == 1, what="the closed session to go")
    await other.send(type="submit", text=QUESTION)
    assert (await other.next("done"))["finish_reason"] == "stop"


async def test_the_frame_size_limit_counts_bytes_not_characters(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(ws_max_message_bytes=2048)
    client = await started(app)
    frame = {"type": "input", "text": "€" * 1500, "seq": 1}  # 1,500 characters, 4,500 bytes
    await client.send_raw(json.dumps(frame, ensure_ascii=False))
    with contextlib.suppress(AssertionError):
        await client.barrier()
    assert client.closed
    assert client.ws.close_code == MESSAGE_TOO_BIG


async def test_too_many_frames_a_second_get_one_rate_limited_error_and_the_session_goes_on(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    rate = 20.0  # the bucket holds 2 * rate = 40 frames
    app = await start_app(ws_frames_per_second=rate)
    client = await started(app)
    began = time.monotonic()
    for seq in range(1, 301):
        await client.send(type="input", text=QUESTION[: seq % len(QUESTION)], seq=seq)
    await asyncio.sleep(10 / rate)  # room for a few frames again
    await client.barrier()  # every flooded frame was handled (or dropped)
    elapsed = time.monotonic() - began

    errors = [frame for frame in client.of_type("error") if frame["code"] == "rate_limited"]
    assert errors, client.frames
    assert len(errors) <= 1 + math.floor(elapsed), "more than one rate error a second"
    assert "frames a second" in errors[0]["message"]
    assert not client.closed

    await client.send(type="submit", text=QUESTION, seq=301)
    done = await client.next("done")
    assert done["finish_reason"] == "stop"
    assert len(fake.finals) == 1


async def test_sessions_over_the_limits_get_an_error_and_close_1008(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(max_sessions=3, max_sessions_per_tenant=2)
    a1, a2 = await started(app, key="key-a"), await started(app, key="key-a")

    a3 = await app.session(key="key-a")  # over tenant-a's two
    error = await a3.next("error")
    assert error["code"] == "rate_limited"
    assert "tenant" in error["message"]
    code, reason = await closed(a3)
    assert code == POLICY_VIOLATION
    assert "tenant" in reason

    b1 = await started(app, key="key-b")  # tenant-b still has room: three in all
    for refused in (await app.session(key="key-b"), await app.session(key=None)):
        if refused.ws.subprotocol is None:  # the key in the first frame: admitted after it
            await refused.send(type="start", api_key="key-b")
        error = await refused.next("error")
        assert error["code"] == "rate_limited"
        assert "too many sessions" in error["message"]
        assert (await closed(refused))[0] == POLICY_VIOLATION

    assert len(app.services.sessions) == 3
    for client in (a1, a2, b1):  # the admitted ones never noticed
        await client.send(type="submit", text=QUESTION)
        assert (await client.next("done"))["finish_reason"] == "stop"
        assert client.of_type("error") == []

    await a1.ws.close()  # a closed session frees its place
    await wait_until(lambda: len(app.services.sessions) == 2, what="a1 to leave")
    assert await started(app, key="key-a")
    assert app.services.sessions.per_tenant == {"tenant-a": 2, "tenant-b": 1}


async def test_a_context_over_the_models_context_is_refused_at_start(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.max_model_len = 256
    app = await start_app(fresh=True)
    client = await app.session(key="key-a")
    huge = {"system": SYSTEM + " More words." * 300}
    await client.send(type="start", context=huge)
    assert (await client.next("error"))["code"] == "input_too_long"
    assert fake.warmups == []  # nothing doomed was sent to vLLM
    await client.send(type="input", text="hello", seq=1)
    assert (await client.next("error"))["code"] == "not_started"
    await client.send(type="start", context={"system": "short"}, params={"max_tokens": 16})
    assert (await client.next("ready"))["type"] == "ready"


async def test_an_input_over_the_models_context_is_input_too_long(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.max_model_len = 256
    app = await start_app(fresh=True)  # reads max_model_len from the fake
    client = await started(app, params={"max_tokens": 16})
    await client.next("warm")
    long_text = " ".join(["word"] * 400)

    await client.send(type="input", text=long_text, seq=1)
    error = await client.next("error")
    assert error["code"] == "input_too_long"
    assert "256" in error["message"]
    await client.send(type="submit", text=long_text, seq=2)
    assert (await client.next("error"))["code"] == "input_too_long"
    assert fake.finals == []
    assert len(fake.warmups) == 1  # the context only

    await client.send(type="submit", text="How many orders?", seq=3)
    assert (await client.next("done"))["finish_reason"] == "stop"
    assert fake.rejected == []


def big_completion() -> bytes:
    return json.dumps({"model": "fake-model", "prompt": "x" * 5000, "max_tokens": 1}).encode()


async def test_an_http_body_over_the_limit_is_413_in_the_envelope(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(http_max_body_bytes=2048)
    http = await app.http()
    headers = {**auth("key-a"), "Content-Type": "application/json"}
    for path in ("/v1/completions", "/v1/chat/completions", "/v1/warm"):
        response = await http.post(path, content=big_completion(), headers=headers)
        error = assert_envelope(response, 413, "payload_too_large")
        assert "2048" in error["message"]
    small = await http.post("/v1/completions", json=COMPLETION, headers=headers)
    assert small.status_code == 200
    assert len(fake.completions) == 1


async def test_a_chunked_http_body_over_the_limit_is_413_in_the_envelope(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(http_max_body_bytes=2048)
    http = await app.http()
    body = big_completion()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    headers = {**auth("key-a"), "Content-Type": "application/json"}
    response = await http.post("/v1/completions", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert fake.completions == []
    assert_envelope(response, 413, "payload_too_large")


async def test_warmups_in_flight_never_exceed_the_bound(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    bound, sessions = 3, 10
    fake.hold_warmups()
    app = await start_app(
        max_warmups_in_flight=bound,
        warm_pieces_in_flight=sessions,
        max_sessions_per_tenant=sessions,
    )
    clients = [await started(app, key="key-a") for _ in range(sessions)]
    await wait_until(lambda: fake.warm_in_flight == bound, what="the bound to fill")
    for client in clients:  # everyone types while the warm-ups hang
        await client.type_text(QUESTION, per_word=True)
    await asyncio.sleep(SETTLE_S)  # refused warm-ups retry every 0.1 s meanwhile
    assert fake.warm_in_flight == bound
    assert app.services.engine.in_flight == bound

    fake.release_warmups()
    for client in clients:  # everyone gets warmed in the end
        await client.next("warm", within=10)
    assert fake.max_warm_in_flight == bound
    await wait_until(lambda: app.services.engine.in_flight == 0, what="the warm-ups to end")


async def test_a_tenants_rejected_warmups_do_not_pause_other_tenants(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True)
    fake.refused_salts.add(tenant_salt(app.services.settings.server_secret, "tenant-a"))
    await started(app, key="key-a")  # vLLM answers 400 to its warm-ups
    await wait_until(lambda: len(fake.rejected) >= 4, what="A's rejected warm-ups")

    b = await started(app, key="key-b")
    await b.next("warm", within=1.0)  # not held back by A's failures (2 s after the 4th)
    assert app.services.engine.pause_s() == 0


async def test_a_warmup_vllm_rejects_is_not_retried_in_a_tight_loop(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True)
    fake.refused_salts.add(tenant_salt(app.services.settings.server_secret, "tenant-a"))
    client = await started(app, key="key-a")
    await asyncio.sleep(2.0)
    # Retried every 0.1 s that is 20 doomed requests (and 20 error frames) in 2 s; a back-off
    # (0.1, 0.2, 0.4, 0.8 s) makes it 4 or 5, not retrying a refused prompt at all makes it 1.
    assert len(fake.rejected) <= 5, f"{len(fake.rejected)} rejected warm-ups in 2 s"
    assert len(client.of_type("error")) <= 5
