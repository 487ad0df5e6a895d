"""A vLLM 400 is a 400 on every path: the WebSocket (`error` frame), the passthrough, a
session's chat completion over HTTP, and an answer that goes on from a speculation.

The fake vLLM checks bodies as vLLM does (`strict`). The orchestrator reads the model's
context length once; the tests then shrink the fake's (as an engine restarted with a smaller
`--max-model-len` would), so the orchestrator's own length check lets the prompt through and
vLLM's refusal is what the client sees.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.errors import UpstreamRejected, UpstreamStatus, upstream_error
from testkit.fake_vllm import FakeVLLM
from tests.fakes import SessionClient, wait_until
from tests.helpers import QUESTION, SYSTEM
from tests.sessions import App, Defaults, StartApp, started

SHRUNK = 64  # the fake's context length after the orchestrator read it (8192)
BUDGET = 2  # tokens a speculation generates before the submit attaches to it


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    return Defaults(strict_fake=True)


def refused_with_400(error: openai.APIStatusError) -> dict[str, Any]:
    """The OpenAI envelope of a 400 that vLLM's refusal became."""
    assert error.status_code == 400
    body = error.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["type"] == "invalid_request_error"
    envelope: dict[str, Any] = body["error"]
    return envelope


async def sdk(app: App, session_id: str | None = None) -> AsyncOpenAI:
    headers = {"X-Session-Id": session_id} if session_id else None
    return AsyncOpenAI(
        base_url=f"{app.url}/v1",
        api_key="unused",
        http_client=await app.http(),
        default_headers=headers,
        max_retries=0,
    )


def session_id_of(client: SessionClient) -> str:
    return str(client.of_type("ready")[0]["session_id"])


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "said"),
    [
        (400, b'{"error": {"message": "too long", "type": "BadRequestError", "code": 400}}',
         UpstreamRejected, "invalid_request", "too long"),
        (400, b'{"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}',
         UpstreamRejected, "invalid_request", "bad"),
        (404, b'{"error": {"message": "no model", "param": "model", "code": 404}}',
         UpstreamRejected, "not_found", "no model"),
        (429, b'{"detail": "too many"}', UpstreamStatus, "rate_limited", "too many"),
        (500, b"engine fell over", UpstreamStatus, "upstream_error", "engine fell over"),
        (None, '{"error": {"message": "mid-way", "code": 400}}', UpstreamRejected,
         "invalid_request", "mid-way"),
        (None, '{"error": "boom"}', UpstreamStatus, "upstream_error", "boom"),
    ],
)  # fmt: skip
def test_every_shape_of_vllm_error_maps_to_its_status_and_the_envelope(
    status: int | None, body: bytes | str, kind: type, code: str, said: str
) -> None:
    error = upstream_error(status, body)
    assert type(error) is kind
    assert error.status_code == (status or (400 if kind is UpstreamRejected else 500))
    assert error.envelope()["error"]["code"] == error.code == code
    assert said in error.envelope()["error"]["message"]
    assert said in error.message
    assert error.message.startswith("vLLM")


async def test_a_vllm_400_is_an_error_frame_with_status_400_on_the_websocket(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await started(app, warmups="off")
    fake.max_model_len = SHRUNK
    await client.send(type="submit", text=QUESTION, seq=1)
    error = await client.next("error")
    assert (error["status"], error["code"]) == (400, "invalid_request")
    assert "maximum context length is 64" in error["message"]
    assert fake.rejected[-1][1] == 400  # vLLM's own refusal, not the orchestrator's check

    fake.max_model_len = 8192  # the session is usable again at once
    await client.send(type="submit", text=QUESTION, seq=2)
    assert (await client.next("done"))["text"]


async def test_a_vllm_400_is_a_400_on_the_passthrough(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app()
    client = await sdk(app)
    fake.max_model_len = SHRUNK
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            await client.completions.create(
                model=fake.model, prompt=list(range(100)), max_tokens=4, stream=stream
            )
        assert "maximum context length" in refused_with_400(refused.value)["message"]
    with pytest.raises(openai.BadRequestError) as chat_refused:
        await client.chat.completions.create(
            model=fake.model,
            messages=[{"role": "robot", "content": "hi"}],  # type: ignore[misc,list-item]
        )
    assert "unknown role" in refused_with_400(chat_refused.value)["message"]


async def test_a_vllm_400_is_a_400_for_a_session_over_http(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    session = await started(app, warmups="off")
    client = await sdk(app, session_id_of(session))
    user: Any = [{"role": "user", "content": QUESTION}]
    fake.max_model_len = SHRUNK
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="m", messages=user, stream=stream)
        assert "maximum context length" in refused_with_400(refused.value)["message"]
    fake.max_model_len = 8192  # the final was closed: the session answers again
    answer = await client.chat.completions.create(model="m", messages=user)
    assert answer.choices[0].message.content


async def speculated(app: App, fake: FakeVLLM) -> SessionClient:
    """A session whose speculation on QUESTION was sent."""
    client = await started(app)
    await client.send(type="input", text=QUESTION, seq=1)
    speculative = lambda: [r for r in fake.finals if r.body.get("return_token_ids")]  # noqa: E731
    await wait_until(lambda: bool(speculative()), what="the speculative final")
    return client


@pytest.mark.parametrize("channel", ["websocket", "http"])
async def test_a_vllm_400_is_a_400_when_an_answer_goes_on_from_its_speculation(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer, channel: str
) -> None:
    app = await start_app(speculate="on", speculate_tokens=BUDGET)
    client = await speculated(app, fake)
    prompt = len(renderer.session_prompt(SYSTEM).final_tokens(QUESTION))
    fake.max_model_len = prompt + BUDGET  # the speculation fitted; the rest of the answer not
    if channel == "websocket":
        await client.send(type="submit", text=QUESTION, seq=2)
        error = await client.next("error")
        assert (error["status"], error["code"]) == (400, "invalid_request")
        assert len(client.of_type("token")) == BUDGET  # the speculation's tokens came first
    else:
        http = await sdk(app, session_id_of(client))
        user: Any = [{"role": "user", "content": QUESTION}]
        with pytest.raises(openai.BadRequestError) as refused:
            await http.chat.completions.create(model="m", messages=user)
        assert "maximum context length" in refused_with_400(refused.value)["message"]
    limit = f"This model's maximum context length is {prompt + BUDGET}"
    assert fake.rejected == [("/v1/completions", 400, limit)]  # the continuation, refused
