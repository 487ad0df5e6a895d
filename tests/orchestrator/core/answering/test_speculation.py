"""Answer before Enter (`core/answering/speculation.py`) against the fake vLLM: a typed question
that ends a sentence is sent as a speculative final, attached at submit when the final is the same.

The fake answers `reply` one token a chunk with its token ids, stops at `max_tokens`, and goes
on from a prompt that ends with the first ids of its reply, so an attached answer (two
tokens of speculation, then the continuation) must equal a cold one exactly.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from orchestrator.core.answering.speculation import Speculation, Speculator
from orchestrator.core.engine.vllm_client import VLLMClient
from orchestrator.core.engine.watch import EngineWatch
from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.core.session import Session
from orchestrator.core.warming.dispatch import WarmDispatcher
from orchestrator.core.warming.gate import WarmupGate
from orchestrator.settings import Settings
from testkit.fake_records import Recorded
from testkit.fake_vllm import REPLY_ID_BASE, FakeVLLM
from tests.fakes import SessionClient, session_tasks, wait_until
from tests.helpers import QUESTION, SYSTEM, sse_data
from tests.orchestrator.web.test_observability import scrape
from tests.sessions import App, Defaults, StartApp, started

BUDGET = 2  # tokens a speculation generates before it is attached (the reply has 5)
WARM_PRIORITY, FINAL_PRIORITY = 7, -3


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    return Defaults(
        settings={
            "speculate": "on",
            "speculate_tokens": BUDGET,
            "warm_priority": WARM_PRIORITY,
            "final_priority": FINAL_PRIORITY,
        }
    )


def speculations(fake: FakeVLLM) -> list[Recorded]:
    return [r for r in fake.finals if r.body.get("return_token_ids")]


def plain_finals(fake: FakeVLLM) -> list[Recorded]:
    return [r for r in fake.finals if not r.body.get("return_token_ids")]


def reply_ids(n: int) -> list[int]:
    return [REPLY_ID_BASE + i for i in range(n)]


async def speculated(
    app: App, fake: FakeVLLM, text: str = QUESTION, **start: object
) -> SessionClient:
    """A session that typed `text` (it ends a sentence) and whose speculation was sent."""
    client = await started(app, **start)
    await client.send(type="input", text=text, seq=1)
    await wait_until(lambda: bool(speculations(fake)), what="the speculative final")
    return client


def speculation_ended(app: App) -> bool:
    """The orchestrator read a speculation to its end (its budget)."""
    sessions = [session for session in app.services.sessions.all() if isinstance(session, Session)]
    return any(s.speculator.current and s.speculator.current.ended for s in sessions)


async def submitted(client: SessionClient, text: str = QUESTION) -> dict[str, Any]:
    await client.send(type="submit", text=text, seq=2)
    done = await client.next("done")
    await wait_until(lambda: not session_tasks(), what="the session's tasks to end")
    return done


async def test_a_submit_of_the_same_prompt_attaches_and_answers_as_a_cold_request(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app(fresh=True)
    client = await speculated(app, fake)
    (spec,) = speculations(fake)
    await wait_until(lambda: speculation_ended(app), what="the speculation's budget")
    tokens = renderer.session_prompt(SYSTEM).final_tokens(QUESTION)
    assert spec.prompt == tokens
    assert spec.max_tokens == BUDGET
    assert spec.body["priority"] == WARM_PRIORITY
    assert not [frame for frame in client.of_type("warm") if frame["submit_ready"]]

    done = await submitted(client)
    (rest,) = plain_finals(fake)
    assert rest.prompt == [*tokens, *reply_ids(BUDGET)]  # the generated ids, never re-tokenized
    assert rest.body["priority"] == FINAL_PRIORITY
    assert rest.max_tokens == app.settings.max_tokens - BUDGET
    assert rest.body["cache_salt"] == spec.body["cache_salt"]
    assert [frame["text"] for frame in client.of_type("token")] == list(fake.reply)
    assert done["scorecard"]["speculative"] is True
    assert done["scorecard"]["speculation_wasted_tokens"] == 0
    assert done["completion_tokens"] == len(fake.reply)
    assert done["prompt_tokens"] == len(tokens)

    cold = await started(app, speculate=False)
    await cold.send(type="submit", text=QUESTION, seq=1)
    cold_done = await cold.next("done")
    assert cold_done["scorecard"]["speculative"] is False
    assert cold_done["text"] == done["text"] == "".join(fake.reply)
    figures = await scrape(app)
    assert figures['prefill_ahead_speculations_total{outcome="attached"}'] == 1


async def test_a_submit_before_the_first_token_attaches_and_waits_for_it(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    fake.hold_streams()
    client = await speculated(app, fake)
    await client.send(type="submit", text=QUESTION, seq=2)
    await client.barrier()
    assert len(fake.finals) == 1  # the final waits for the speculation, sends nothing of its own
    fake.release_streams()
    done = await client.next("done")
    assert done["scorecard"]["speculative"] is True
    assert done["text"] == "".join(fake.reply)
    assert not speculations(fake)[0].disconnected


async def test_an_edit_cancels_the_speculation_at_once_and_counts_its_tokens(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True)
    client = await speculated(app, fake)
    await wait_until(lambda: speculation_ended(app), what="the speculation's budget")
    edited = QUESTION[:-1] + " please"
    await client.send(type="input", text=edited, seq=2)
    await client.barrier()

    done = await submitted(client, edited)
    assert done["scorecard"]["speculative"] is False
    assert done["scorecard"]["speculation_wasted_tokens"] == BUDGET
    (final,) = plain_finals(fake)
    assert final.prompt[-BUDGET:] != reply_ids(BUDGET)
    assert done["text"] == "".join(fake.reply)
    figures = await scrape(app)
    assert figures['prefill_ahead_speculations_total{outcome="wasted"}'] == 1
    assert figures["prefill_ahead_speculation_wasted_tokens_total"] == BUDGET


async def test_an_edit_closes_a_speculation_still_in_vllm(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    fake.hold_streams()
    client = await speculated(app, fake)
    await client.send(type="input", text=QUESTION[:-1], seq=2)
    (spec,) = speculations(fake)
    await wait_until(lambda: spec.disconnected, what="vLLM to see the speculation go")


async def test_a_different_submit_sends_the_normal_final(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app()
    client = await speculated(app, fake)
    await wait_until(lambda: speculation_ended(app), what="the speculation's budget")
    other = QUESTION.replace("three", "four")

    done = await submitted(client, other)
    (final,) = plain_finals(fake)
    assert final.prompt == renderer.session_prompt(SYSTEM).final_tokens(other)
    assert done["scorecard"]["speculative"] is False
    assert done["scorecard"]["speculation_wasted_tokens"] == BUDGET


class RecordingContext:
    """A text-to-SQL context that records the answers its query would run on."""

    system_prompt = SYSTEM
    openings = ("Question: ", "```sql\n")
    stop_sequences = ("```",)

    def __init__(self) -> None:
        self.answers: list[str] = []

    def answer_complete(self, answer: str) -> None:
        return None  # the stop sequence ends it

    async def after_answer(self, answer: str) -> dict[str, Any]:
        self.answers.append(answer)
        return {"sql": answer, "refused": "not run in this test"}


async def test_the_sql_runs_only_after_the_submit(
    start_app: StartApp, fake: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_app(fresh=True)
    context = RecordingContext()
    monkeypatch.setattr(app.services.contexts, "get", lambda name: context)
    client = await started(app, context={"database": "shop"})
    await client.send(type="input", text=QUESTION, seq=1)
    await wait_until(lambda: speculation_ended(app), what="the speculation's budget")
    assert context.answers == []

    done = await submitted(client)
    assert done["scorecard"]["speculative"] is True
    assert context.answers == ["```sql\n" + "".join(fake.reply)]
    assert done["sql"] == context.answers[0]


def final_body(**changes: Any) -> dict[str, Any]:
    body = {"model": "m", "prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0.0}
    return body | {"priority": 0, "cache_salt": "s"} | changes


@pytest.mark.parametrize(
    "changes",
    [{"prompt": [1, 2, 4]}, {"temperature": 0.5}, {"max_tokens": 9}, {"cache_salt": "t"}],
)
async def test_only_the_very_same_final_attaches(changes: dict[str, Any]) -> None:
    settings = Settings(speculate="on", enable_database=False)
    async with httpx.AsyncClient() as http:
        dispatcher = WarmDispatcher(VLLMClient(http), WarmupGate(100.0), EngineWatch(4), 10)
        speculator = Speculator(VLLMClient(http), dispatcher, settings, "s1", "t")
        spec = Speculation("text?", final_body(), sent=True)
        spec.add({"choices": [{"text": " a", "token_ids": [7], "finish_reason": None}]})
        speculator.current = spec
        assert speculator.take(final_body(**changes)) is None
        assert speculator.current is None
        assert speculator.outcome(None).wasted_tokens == 1

        again = Speculation("text?", final_body(), sent=True)
        speculator.current = again
        assert speculator.take(final_body()) is again
        assert speculator.outcome(again).speculative


async def test_a_new_start_throws_the_speculation_away(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app()
    fake.hold_streams()
    client = await speculated(app, fake)
    await client.send(type="start", context={"system": SYSTEM}, params={"temperature": 0.5})
    await client.next("ready")
    (spec,) = speculations(fake)
    await wait_until(lambda: spec.disconnected, what="vLLM to see the speculation go")


async def test_the_budget_is_the_final_max_tokens_when_smaller(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await speculated(app, fake, params={"max_tokens": 1})
    (spec,) = speculations(fake)
    assert spec.max_tokens == 1
    done = await submitted(client)
    assert done["scorecard"]["speculative"] is True
    assert done["finish_reason"] == "length"
    assert done["text"] == fake.reply[0]
    assert not plain_finals(fake)  # nothing left to ask for


async def final_waiting(app: App, fake: FakeVLLM) -> SessionClient:
    """Another session whose final request waits for its first token (the fake holds it)."""
    fake.hold_streams()
    busy = await started(app, speculate=False)
    await busy.send(type="submit", text="How many orders shipped today?", seq=1)
    await wait_until(lambda: bool(fake.finals), what="the other session's final")
    return busy


async def test_mode_idle_never_speculates_while_a_final_waits(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(speculate="idle")
    busy = await final_waiting(app, fake)
    typist = await started(app)
    await typist.send(type="input", text=QUESTION, seq=1)
    await typist.barrier()
    assert not speculations(fake)
    figures = await scrape(app)
    assert figures['prefill_ahead_speculations_total{outcome="refused"}'] == 1
    fake.release_streams()
    await busy.next("done")


async def test_mode_on_speculates_beside_a_waiting_final(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    busy = await final_waiting(app, fake)
    await speculated(app, fake)
    fake.release_streams()
    await busy.next("done")


async def test_speculation_off_for_a_session_that_opts_out(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await started(app, speculate=False)
    await client.send(type="input", text=QUESTION, seq=1)
    done = await submitted(client)
    assert done["scorecard"]["speculative"] is False
    assert not speculations(fake)


# -- a session's final over HTTP (X-Session-Id) attaches the same way ----------------------


async def chat_for(app: App, client: SessionClient, **body: Any) -> httpx.Response:
    http = await app.http()
    session_id = client.of_type("ready")[-1]["session_id"]
    messages = [{"role": "user", "content": QUESTION}]
    return await http.post(
        "/v1/chat/completions", json={"messages": messages, **body},
        headers={"X-Session-Id": session_id},
    )  # fmt: skip


@pytest.mark.parametrize("stream", [True, False])
async def test_a_chat_completion_of_the_same_text_attaches_like_a_submit(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer, stream: bool
) -> None:
    app = await start_app(fresh=True)
    client = await speculated(app, fake)
    await wait_until(lambda: speculation_ended(app), what="the speculation's budget")

    response = await chat_for(app, client, stream=stream)
    assert response.status_code == 200, response.text
    if stream:
        events = sse_data(response)
        chunks = [json.loads(event) for event in events[:-1]]
        text = "".join(c["delta"].get("content", "") for ch in chunks for c in ch["choices"])
        usage = chunks[-1]["usage"]
    else:
        text = response.json()["choices"][0]["message"]["content"]
        usage = response.json()["usage"]
    assert text == "".join(fake.reply)
    assert usage["prefill_ahead"]["speculative"] is True
    assert usage["completion_tokens"] == len(fake.reply)
    tokens = renderer.session_prompt(SYSTEM).final_tokens(QUESTION)
    (rest,) = plain_finals(fake)
    assert rest.prompt == [*tokens, *reply_ids(BUDGET)]
    assert rest.body["priority"] == FINAL_PRIORITY
    figures = await scrape(app)
    assert figures['prefill_ahead_speculations_total{outcome="attached"}'] == 1


async def test_a_chat_completion_that_changes_a_field_sends_its_own_final(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app(fresh=True)
    client = await speculated(app, fake)
    await wait_until(lambda: speculation_ended(app), what="the speculation's budget")

    response = await chat_for(app, client, temperature=0.9)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prefill_ahead"]["speculative"] is False
    assert response.json()["usage"]["prefill_ahead"]["speculation_wasted_tokens"] == BUDGET
    (final,) = plain_finals(fake)
    assert final.prompt == renderer.session_prompt(SYSTEM).final_tokens(QUESTION)
    assert final.body["temperature"] == 0.9
