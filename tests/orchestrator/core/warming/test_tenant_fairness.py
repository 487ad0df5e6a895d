"""One tenant cannot stop another's warm-ups: neither its non-streamed final requests (they
keep warm-ups to the smaller bound for at most `final_room_s`, never for a whole answer)
nor a flood of finals (at most `max_finals_per_tenant` at once: 429 beyond, with a clear
body) nor many sessions (the scheduler's turns go round robin across tenants)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from testkit.fake_vllm import FakeVLLM
from tests.fakes import wait_until
from tests.sessions import Defaults, StartApp, salt, started

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
ANSWER = {"model": "fake-model", "prompt": "Tell me a long story.", "max_tokens": 64}


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    return Defaults(settings={"api_keys": KEYS}, key="key-b")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_tenants_non_streamed_finals_do_not_stop_anothers_warmups(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(max_finals_per_tenant=3, final_room_s=60)
    http = await app.http()
    fake.hold_answers()  # tenant A's answers take as long as the test wants
    answers = [
        asyncio.create_task(http.post("/v1/completions", json=ANSWER, headers=bearer("key-a")))
        for _ in range(3)
    ]
    await wait_until(lambda: len(fake.finals) == 3, what="A's finals at vLLM")

    b = await started(app)  # tenant B starts typing while all of A's are generating
    await b.next("warm", within=5)
    await b.send(type="input", text="Show every order of the last week by customer", seq=1)
    await b.send(type="submit", text="Show every order of the last week by customer", seq=1)
    done = await b.next("done", within=5)
    assert done["finish_reason"] == "stop"
    assert {warm.body["cache_salt"] for warm in fake.warmups} == {salt("tenant-b")}

    fake.release_answers()
    replies = await asyncio.gather(*answers)
    assert [reply.status_code for reply in replies] == [200, 200, 200]


async def test_a_tenant_over_its_finals_at_once_gets_429_and_others_do_not(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(max_finals_per_tenant=2)
    http = await app.http()
    fake.hold_answers()
    held = [
        asyncio.create_task(http.post("/v1/completions", json=ANSWER, headers=bearer("key-a")))
        for _ in range(2)
    ]
    await wait_until(lambda: len(fake.finals) == 2, what="A's two finals at vLLM")

    over = await http.post("/v1/completions", json=ANSWER, headers=bearer("key-a"))
    assert over.status_code == 429
    error = over.json()["error"]
    assert error["code"] == "rate_limited"
    assert "2 requests of this tenant" in error["message"]
    assert len(fake.finals) == 2  # nothing reached vLLM

    other = asyncio.create_task(http.post("/v1/completions", json=ANSWER, headers=bearer("key-b")))
    await wait_until(lambda: len(fake.finals) == 3, what="B's final at vLLM")
    fake.release_answers()
    replies: list[httpx.Response] = await asyncio.gather(*held, other)
    assert [reply.status_code for reply in replies] == [200, 200, 200]
    after = await http.post("/v1/completions", json=ANSWER, headers=bearer("key-a"))
    assert after.status_code == 200  # the tenant's slots came back
