"""The `/ws/session` WebSocket against a fake vLLM that records every request it receives.

The orchestrator and the fake each run on uvicorn in the test's own event loop, the client
is a real `websockets` client: the fake can hold its handlers with `asyncio.Event`s, and a test
can see whether the session left any task running. One fake (reset before each test) and one
orchestrator with the default test settings serve the whole module; a test that needs other
settings starts its own orchestrator. Tests wait on frames and on what the fake recorded, never
on timings; a short settle (SETTLE_S) is only used to check that nothing more happens.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from orchestrator.core.planning.planner import usable_blocks
from orchestrator.core.planning.prompt import PromptRenderer
from testkit.fake_vllm import FakeVLLM
from tests.fakes import SessionClient, wait_until
from tests.helpers import BLOCK, QUESTION, SETTLE_S, SYSTEM, sse_data
from tests.sessions import App, Defaults, StartApp, salt, started


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    return Defaults(settings={"warm_priority": 7, "final_priority": -3})


def full_blocks(tokens: list[int] | tuple[int, ...]) -> list[int]:
    """What a warm-up of `tokens` sends: one token past its last full usable block."""
    return list(tokens[: usable_blocks(len(tokens), BLOCK) * BLOCK + 1])


def system_where(renderer: PromptRenderer, text: str, *, pause_adds_block: bool) -> str:
    """SYSTEM padded so that, once `text` is warmed, the submit-ready prompt does (not) end
    in a new full block: the typing-pause warm-up is worth sending exactly when it does."""
    for pad in range(4 * BLOCK):
        system = SYSTEM + " ok" * pad
        prompt = renderer.session_prompt(system)
        warmed = len(prompt.warm_tokens(text))
        final = len(prompt.final_tokens(text))
        if (usable_blocks(final, BLOCK) > usable_blocks(warmed, BLOCK)) == pause_adds_block:
            return system
    raise AssertionError("no padding gives the wanted block layout")


# --- start ----------------------------------------------------------------------------------


async def test_start_answers_ready_and_warms_the_context_once(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app()
    client = await app.session()
    await client.send(type="start", context={"system": SYSTEM})

    ready = await client.next("ready")
    assert ready["model"] == "fake-model"
    assert ready["block_size"] == BLOCK
    assert ready["warmups"] == "keystroke"
    assert ready["session_id"]

    warm = await client.next("warm")
    assert warm["seq"] == 0
    assert warm["submit_ready"] is False
    await asyncio.sleep(SETTLE_S)
    assert len(fake.warmups) == 1
    context = full_blocks(renderer.session_prompt(SYSTEM).head_tokens)
    assert fake.warmups[0].prompt == context  # what gets cached, never the partial block
    assert warm["tokens"] == len(context)


async def test_block_size_comes_from_metrics_when_not_configured(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.block_size = 16
    app = await start_app(block_size=None)
    client = await app.session()
    await client.send(type="start")
    ready = await client.next("ready")
    assert ready["block_size"] == 16
    assert "/metrics" in fake.gets


# --- warm-up requests -----------------------------------------------------------------------


async def test_warmups_are_prefixes_of_the_final_prompt_with_server_salt_and_priorities(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app()
    client = await started(app, cache_namespace="run-1")
    last = await client.type_text(QUESTION)
    await client.next("warm", lambda frame: frame["seq"] > 0)  # the typed text was warmed
    await client.send(type="submit", text=QUESTION, seq=last)
    await client.next("done")
    await wait_until(lambda: fake.warm_in_flight == 0, what="warm-ups to end")
    assert len(fake.warmups) >= 2

    (final,) = fake.finals
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    rendered = renderer.tokenizer.apply_chat_template(chat, add_generation_prompt=True)
    assert final.prompt == list(rendered["input_ids"])  # the model's own chat template
    assert final.body["priority"] == app.settings.final_priority
    assert final.body["cache_salt"] == salt(namespace="run-1")

    for warm in fake.warmups:
        body = warm.body
        assert body["max_tokens"] == 1
        assert body["priority"] == app.settings.warm_priority
        assert body["cache_salt"] == salt(namespace="run-1")
        assert all(isinstance(token, int) for token in body["prompt"])
        assert warm.prompt == final.prompt[: len(warm.prompt)], "warm-up is not a prefix"
    lengths = [len(warm.prompt) for warm in fake.warmups]
    assert lengths == sorted(lengths)


def test_openings_frame_the_question_and_start_the_answer(renderer: PromptRenderer) -> None:
    prompt = renderer.session_prompt(SYSTEM, openings=("Question:\n", "```sql\n"))
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Question:\nhi"}]
    rendered = renderer.tokenizer.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True
    )
    assert prompt.frame.full_text("hi") == rendered + "```sql\n"
    final = prompt.final_tokens(QUESTION)
    assert renderer.decode(final).endswith(QUESTION + prompt.frame.tail)
    assert prompt.frame.tail.endswith("```sql\n")
    warm = prompt.warm_tokens(QUESTION)
    assert final[: len(warm)] == warm  # still a token prefix of the final prompt
    assert renderer.session_prompt(SYSTEM).head_tokens != prompt.head_tokens


async def test_client_cannot_set_the_cache_salt(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app()
    client = await app.session()
    await client.send(type="start", context={"system": SYSTEM}, cache_salt="someone-elses")
    error = await client.next("error")
    assert error["code"] == "bad_frame"
    assert "cache_salt" in error["message"]
    assert fake.completions == []

    await client.send(type="start", context={"system": SYSTEM})
    await client.next("ready")
    await client.send(type="submit", text="hello")
    await client.next("done")
    salts = {request.body["cache_salt"] for request in fake.completions}
    assert salts == {salt()}


async def test_one_warmup_in_flight_and_only_the_newest_pending_text_is_warmed(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    fake.hold_warmups()
    app = await start_app()
    client = await started(app)
    await wait_until(lambda: fake.warm_in_flight == 1, what="the context warm-up")

    last = await client.type_text(QUESTION)
    await client.barrier()  # every keystroke handled
    await asyncio.sleep(SETTLE_S)
    assert len(fake.warmups) == 1, "a second warm-up was sent while one was in flight"

    fake.release_warmups()
    warm = await client.next("warm", lambda frame: frame["seq"] == last)
    await asyncio.sleep(SETTLE_S)
    assert len(fake.warmups) == 2  # the context, then the newest text only
    # The question ends a sentence, so the newest candidate is its submit-ready prompt.
    expected = full_blocks(renderer.session_prompt(SYSTEM).final_tokens(QUESTION))
    assert fake.warmups[1].prompt == expected
    assert warm["tokens"] == len(expected)
    assert fake.max_warm_in_flight == 1


# --- typing pause ---------------------------------------------------------------------------


async def test_typing_pause_warms_the_submit_ready_prompt(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    system = system_where(renderer, QUESTION, pause_adds_block=True)
    prompt = renderer.session_prompt(system)
    app = await start_app(typing_pause_ms=100)
    client = await app.session()
    await client.send(type="start", context={"system": system})
    await client.next("warm", lambda frame: frame["seq"] == 0)

    await client.send(type="input", text=QUESTION, seq=1)
    pause = await client.next("warm", lambda frame: frame["submit_ready"], within=3)
    final_tokens = prompt.final_tokens(QUESTION)
    assert fake.warmups[-1].prompt == final_tokens  # ends with the template's tail
    assert pause["seq"] == 1

    await client.send(type="submit", text=QUESTION, seq=1)
    done = await client.next("done")
    assert fake.finals[0].prompt == final_tokens
    assert done["cached_tokens"] == usable_blocks(len(final_tokens), BLOCK) * BLOCK


async def test_typing_pause_sends_nothing_when_no_full_block_is_added(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    system = system_where(renderer, QUESTION, pause_adds_block=False)
    prompt = renderer.session_prompt(system)
    app = await start_app(typing_pause_ms=100)
    client = await app.session()
    await client.send(type="start", context={"system": system})
    await client.next("warm", lambda frame: frame["seq"] == 0)

    await client.send(type="input", text=QUESTION, seq=1)
    await client.next("warm", lambda frame: frame["seq"] == 1)
    await asyncio.sleep(0.1 + SETTLE_S)
    assert len(fake.warmups) == 2  # the context and the typed text; no pause warm-up
    assert not [frame for frame in client.of_type("warm") if frame["submit_ready"]]

    await client.send(type="submit", text=QUESTION, seq=1)
    done = await client.next("done")
    final_tokens = prompt.final_tokens(QUESTION)
    assert done["cached_tokens"] == usable_blocks(len(final_tokens), BLOCK) * BLOCK


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mentions"),
    [
        ("{not json", "JSON"),
        ('{"type": "shout", "text": "hi"}', "shout"),
        ('{"type": "input", "seq": 1}', "text"),
        ('{"type": "start", "bogus": 1}', "bogus"),
        ('["start"]', ""),
    ],
)
async def test_bad_frames_answer_bad_frame_and_the_session_stays_usable(
    start_app: StartApp, fake: FakeVLLM, raw: str, mentions: str
) -> None:
    app = await start_app()
    client = await app.session()
    await client.send_raw(raw)
    error = await client.next("error")
    assert error["code"] == "bad_frame"
    assert mentions in error["message"]

    await client.send(type="start", context={"system": SYSTEM})
    await client.next("ready")
    await client.send(type="submit", text="hello")
    assert (await client.next("done"))["finish_reason"] == "stop"


async def test_input_or_submit_before_start_is_not_started(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await app.session()
    await client.send(type="input", text="hel", seq=1)
    assert (await client.next("error"))["code"] == "not_started"
    await client.send(type="submit", text="hello", seq=2)
    assert (await client.next("error"))["code"] == "not_started"
    assert fake.completions == []

    await client.send(type="start", context={"system": SYSTEM})
    await client.next("ready")
    await client.send(type="submit", text="hello", seq=3)
    assert (await client.next("done"))["finish_reason"] == "stop"


async def test_second_submit_while_generating_is_busy(start_app: StartApp, fake: FakeVLLM) -> None:
    fake.stream_hang = True
    app = await start_app()
    client = await started(app, warmups="off")
    await client.send(type="submit", text="hello")
    await client.next("token")

    await client.send(type="submit", text="hello twice")
    assert (await client.next("error"))["code"] == "busy"
    assert len(fake.finals) == 1

    await client.send(type="cancel")
    assert (await client.next("done"))["finish_reason"] == "cancelled"
    fake.stream_hang = False
    await client.send(type="submit", text="hello again")
    assert (await client.next("done"))["finish_reason"] == "stop"


async def test_upstream_error_on_the_final_request(start_app: StartApp, fake: FakeVLLM) -> None:
    fake.final_status = 500
    app = await start_app()
    client = await started(app, warmups="off")
    await client.send(type="submit", text="hello")
    error = await client.next("error")
    assert error["code"] == "upstream_error"
    assert "500" in error["message"]
    await asyncio.sleep(SETTLE_S)
    assert client.of_type("done") == []

    fake.final_status = 200
    await client.send(type="submit", text="hello again")
    assert (await client.next("done"))["finish_reason"] == "stop"


async def test_failing_warmup_reports_warmup_failed_and_submit_still_works(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.warm_status = 500
    app = await start_app()
    client = await started(app)  # the context warm-up fails
    error = await client.next("error")
    assert error["code"] == "warmup_failed"

    await client.send(type="submit", text=QUESTION, seq=1)
    done = await client.next("done")
    assert done["finish_reason"] == "stop"
    assert done["warm_pieces"]["landed"] == 0


async def test_warmups_off_sends_no_warmup_at_all(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app(typing_pause_ms=50)
    client = await started(app, warmups="off")
    assert client.of_type("ready")[0]["warmups"] == "off"
    last = await client.type_text(QUESTION, per_word=True)
    await asyncio.sleep(0.05 + SETTLE_S)  # past the typing pause
    await client.send(type="submit", text=QUESTION, seq=last)
    done = await client.next("done")
    await asyncio.sleep(SETTLE_S)

    assert fake.warmups == []
    assert len(fake.finals) == 1
    assert client.of_type("warm") == []
    assert done["warm_pieces"]["landed"] == 0
    assert done["cached_tokens"] == 0


async def test_warmups_context_warms_only_the_context(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app(typing_pause_ms=50)
    client = await started(app, warmups="context")
    assert client.of_type("ready")[0]["warmups"] == "context"
    await client.next("warm", lambda frame: frame["seq"] == 0)
    last = await client.type_text(QUESTION, per_word=True)
    await asyncio.sleep(0.05 + SETTLE_S)  # past the typing pause
    await client.send(type="submit", text=QUESTION, seq=last)
    done = await client.next("done")
    await asyncio.sleep(SETTLE_S)

    assert [warm.prompt for warm in fake.warmups] == [
        full_blocks(renderer.session_prompt(SYSTEM).head_tokens)
    ]
    assert done["warm_pieces"]["landed"] == 1
    assert done["cached_tokens"] == usable_blocks(len(fake.warmups[0].prompt), BLOCK) * BLOCK


# --- the global gate ------------------------------------------------------------------------


async def test_global_gate_bounds_warmups_per_second(start_app: StartApp, fake: FakeVLLM) -> None:
    rate, sessions, window_s = 2.0, 6, 1.2
    burst = max(1.0, rate)  # the gate's bucket starts full
    app = await start_app(warmups_per_second=rate)
    for _ in range(sessions):  # each start asks for one warm-up (the context)
        await started(app)
    await wait_until(lambda: len(fake.warmups) >= 1, what="a first warm-up")
    await asyncio.sleep(window_s)

    times = [warm.at for warm in fake.warmups]
    assert 3 <= len(times) < sessions, times  # the gate held some back, but kept going
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            allowed = burst + rate * (times[j] - times[i]) + 1  # one warm-up of slack
            assert j - i + 1 <= allowed, f"{j - i + 1} warm-ups in {times[j] - times[i]:.3f} s"


# -- a session's final request over HTTP (X-Session-Id) -----------------------------------


async def http_session(app: App, **start: Any) -> tuple[SessionClient, str]:
    client = await app.session()
    await client.send(**{"type": "start", "context": {"system": SYSTEM}, **start})
    ready = await client.next("ready")
    return client, str(ready["session_id"])


async def chat(app: App, session_id: str, **body: Any) -> httpx.Response:
    http = await app.http()
    return await http.post("/v1/chat/completions", json=body, headers={"X-Session-Id": session_id})


async def test_http_chat_for_a_session_sends_the_sessions_own_final_prompt(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app()
    client, session_id = await http_session(app)
    await client.next("warm", lambda frame: frame["seq"] == 0)
    await client.send(type="input", text=QUESTION, seq=1)
    await client.next("warm", lambda frame: frame["seq"] == 1)

    alone = await chat(app, session_id, messages=[{"role": "user", "content": QUESTION}])
    with_context = await chat(app, session_id, messages=[
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION},
    ], max_completion_tokens=5)  # fmt: skip

    expected = renderer.session_prompt(SYSTEM).final_tokens(QUESTION)
    assert [final.prompt for final in fake.finals] == [expected, expected]
    assert {final.body["cache_salt"] for final in fake.finals} == {salt()}
    assert fake.finals[1].body["max_tokens"] == 5
    for response in (alone, with_context):
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["object"] == "chat.completion"
        assert answer["choices"][0]["message"]["role"] == "assistant"
        assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


async def test_http_chat_for_a_session_streams_chat_chunks(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    _, session_id = await http_session(app)
    response = await chat(
        app, session_id, stream=True, messages=[{"role": "user", "content": "hi"}]
    )
    assert response.status_code == 200
    events = sse_data(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["delta"].get("content", "") for chunk in chunks for c in chunk["choices"])
    assert text == "".join(fake.reply)
    assert chunks[-1]["usage"]["prompt_tokens"] > 0
    assert fake.finals[0].body["stream_options"] == {"include_usage": True}


async def test_http_chat_for_a_session_refuses_what_it_cannot_keep(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    _, session_id = await http_session(app)
    user = {"role": "user", "content": "hi"}
    other_context = await chat(app, session_id, messages=[{"role": "system", "content": "x"}, user])
    tools = await chat(app, session_id, messages=[user], tools=[{"type": "function"}])
    unknown = await chat(app, "not-a-session", messages=[user])
    assert other_context.status_code == tools.status_code == unknown.status_code == 400
    assert other_context.json()["error"]["code"] == "context_mismatch"
    assert tools.json()["error"]["param"] == "tools"
    assert unknown.json()["error"]["code"] == "unknown_session"
    assert fake.finals == []  # nothing reached vLLM


# --- pieces ---------------------------------------------------------------------------------


async def test_a_long_context_goes_out_in_pieces_each_credited_as_it_lands(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app(warm_piece_tokens=2 * BLOCK)
    system = SYSTEM + " The schema follows." * 30
    head = renderer.session_prompt(system).head_tokens
    client = await started(app, context={"system": system})
    blocks = usable_blocks(len(head), BLOCK)
    pieces = [await client.next("warm", within=5) for _ in range(-(-blocks // 2))]

    prompts = [warm.prompt for warm in fake.warmups]
    assert prompts == [
        list(head[: min(end, blocks) * BLOCK + 1]) for end in range(2, blocks + 2, 2)
    ]
    for sent in fake.warmups:  # each piece computes at most 2 blocks and 1 token more
        usage = sent.usage or {}
        assert (
            usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"]
            <= 2 * BLOCK + 1
        )
    assert [warm["cached_tokens"] for warm in pieces] == [
        min(end, blocks) * BLOCK for end in range(2, blocks + 2, 2)
    ]  # each credited at once: the session believes it the moment it lands

    await client.send(type="submit", text="Hi", seq=1)
    done = await client.next("done")
    assert done["cached_tokens"] == blocks * BLOCK
    assert done["warm_pieces"] == {"sent": len(prompts), "landed": len(prompts), "cancelled": 0}


async def test_newer_text_takes_over_between_two_pieces(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app(warm_piece_tokens=BLOCK)
    client = await started(app)
    await client.next("warm", lambda frame: frame["seq"] == 0)
    text = "Show every customer of the northern region by name and city please " * 8
    fake.hold_warmups()
    await client.send(type="input", text=text[:300], seq=1)  # several blocks: several pieces
    await wait_until(lambda: fake.warm_in_flight == 1, what="the first piece")
    await client.send(type="input", text=text, seq=2)  # pending: it goes on after this piece
    fake.release_warmups()
    await client.next("warm", lambda frame: frame["seq"] == 2, within=5)
    seqs = [warm["seq"] for warm in client.of_type("warm")]
    assert seqs.count(1) == 1  # the first text's later pieces were never sent
    final = renderer.session_prompt(SYSTEM).final_tokens(text)
    assert fake.warmups[-1].prompt == full_blocks(final)[: len(fake.warmups[-1].prompt)]
