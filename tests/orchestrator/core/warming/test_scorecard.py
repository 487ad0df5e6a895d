"""The scorecard of a final request: its counting (pure), and the `done` frame's and the HTTP
answer's scorecards against the recording fake vLLM (whose prefix-cache simulation reports
the `cached_tokens` vLLM would)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from openai import AsyncOpenAI

from orchestrator.core.engine.prefill_cost import PrefillCost
from orchestrator.core.engine.vllm_client import Usage
from orchestrator.core.planning.planner import (
    WarmPlanner,
    common_prefix_len,
    usable_blocks,
    valid_blocks,
)
from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.core.warming.scorecard import ScoreSheet, WarmSpan, useful_tokens
from testkit.fake_records import Recorded
from testkit.fake_vllm import FakeVLLM
from tests.helpers import BLOCK, QUESTION
from tests.orchestrator.core.test_session import system_where
from tests.sessions import App, StartApp, started

FIELDS = {"warmed_tokens", "hit_tokens", "warm_prefill_tokens", "wasted_prefill_tokens",
          "ttft_ms", "cold_ttft_ms", "saved_ms", "speculative",
          "speculation_wasted_tokens"}  # fmt: skip


def useful_by_position(
    warmups: Sequence[tuple[Sequence[int], int]], final: Sequence[int], hit: int, block: int
) -> int:
    """The definition, position by position: a position some warm-up computed whose whole
    block the final shares with that warm-up and hit."""
    useful: set[int] = set()
    for prompt, cached in warmups:
        for position in range(cached, len(prompt)):
            end = (position // block + 1) * block
            if end <= hit and end <= len(prompt) and list(prompt[:end]) == list(final[:end]):
                useful.add(position)
    return len(useful)


def span(prompt: Sequence[int], cached: int, block: int = 4) -> WarmSpan:
    return WarmSpan.of(prompt, Usage(len(prompt), 1, cached), block, None)


# --- counting (pure) ------------------------------------------------------------------------

FINAL = list(range(100, 114))  # 14 tokens, blocks of 4: 3 full blocks, 12 hit at most


@pytest.mark.parametrize(
    ("warmups", "hit"),
    [
        ([(FINAL[:10], 0)], 12),  # a prefix: its 2 full blocks served, its tail did not
        ([(FINAL[:10], 0), (FINAL, 8)], 12),  # then the submit-ready prompt
        ([(FINAL[:10], 0), (FINAL[:10], 8)], 12),  # the same tail computed twice
        ([([*FINAL[:5], 7, 7, 7, 7, 7], 0), (FINAL, 4)], 12),  # an edit at position 5
        ([(FINAL, 0)], 4),  # blocks evicted before the final: only what it hit counts
        ([([1, 2, 3, 4, 5, 6, 7, 8, 9], 0)], 12),  # nothing in common
    ],
)
def test_useful_positions_are_those_of_shared_blocks_the_final_hit(
    warmups: list[tuple[list[int], int]], hit: int
) -> None:
    spans = [span(prompt, cached) for prompt, cached in warmups]
    assert useful_tokens(spans, FINAL, hit, 4) == useful_by_position(warmups, FINAL, hit, 4)


def test_the_sheet_scores_hits_spent_waste_and_teaches_the_fit() -> None:
    planner = WarmPlanner(4)
    warmed = [*FINAL[:5], 7, 7, 7, 7, 7]  # edited at position 5 afterwards
    planner.on_warm_done(planner.on_input(warmed, 1) or pytest.fail("not sent"), ok=True)
    spans = [span(warmed, 0)]
    cost = PrefillCost()
    cost.observe(1000, 1010.0)
    sheet = ScoreSheet.at_submit(planner, FINAL, spans)
    spans.append(WarmSpan.of(FINAL, Usage(14, 1, 4), 4, 20.0))  # lands after the submit

    card = sheet.score(Usage(14, 8, 12), 7.5, cost)
    assert card.warmed_tokens == 4  # one block in common with what was warmed
    assert card.hit_tokens == 12
    assert card.warm_prefill_tokens == 10 + 10
    assert card.wasted_prefill_tokens == 20 - 12  # 4..9 of the edited one, 12..13 of the last
    assert card.cold_ttft_ms == pytest.approx(24.0, abs=0.01)  # 10 ms + 1 per token, 14 tokens
    assert card.saved_ms == pytest.approx(24.0 - 7.5, abs=0.01)
    assert len(cost) == 1 + 1 + 1  # the timed warm-up, then the final (2 computed tokens)


def test_a_sheet_without_usage_or_learning_leaves_the_fit_alone() -> None:
    cost = PrefillCost()
    sheet = ScoreSheet.at_submit(WarmPlanner(4), FINAL, [span(FINAL[:8], 0)])
    card = sheet.score(Usage(14, 0, 0), None, cost, learn=False)
    assert (card.hit_tokens, card.warmed_tokens, card.cold_ttft_ms, card.saved_ms) == (
        0, 0, None, None,
    )  # fmt: skip
    assert len(cost) == 0


# --- the done frame -------------------------------------------------------------------------


def warmups_of(fake: FakeVLLM) -> list[tuple[list[int], int]]:
    return [(w.prompt, cached_of(w)) for w in fake.warmups if w.usage is not None]


def cached_of(record: Recorded) -> int:
    assert record.usage is not None
    cached: int = record.usage["prompt_tokens_details"]["cached_tokens"]
    return cached


def spent_by(fake: FakeVLLM) -> int:
    return sum(len(prompt) - cached for prompt, cached in warmups_of(fake))


async def test_the_scorecard_of_a_fully_warmed_prompt(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    system = system_where(renderer, QUESTION, pause_adds_block=True)
    app = await start_app()
    client = await started(app, context={"system": system})
    await client.next("warm", lambda frame: frame["seq"] == 0)
    await client.send(type="input", text=QUESTION, seq=1)  # a sentence end: warm it all
    await client.next("warm", lambda frame: frame["submit_ready"])
    await client.send(type="submit", text=QUESTION, seq=1)
    done = await client.next("done")

    card = done["scorecard"]
    assert set(card) == FIELDS - {"ttft_ms", "hit_tokens"}  # the frame's ttft_ms, cached_tokens
    (final,) = fake.finals
    assert fake.warmups[-1].prompt == final.prompt  # the last warm-up was the whole prompt
    assert done["cached_tokens"] == cached_of(final)
    assert card["warmed_tokens"] == usable_blocks(len(final.prompt), BLOCK) * BLOCK
    assert card["warmed_tokens"] == done["cached_tokens"]  # all it warmed, it hit
    assert card["warm_prefill_tokens"] == spent_by(fake)
    useful = useful_by_position(warmups_of(fake), final.prompt, cached_of(final), BLOCK)
    assert card["wasted_prefill_tokens"] == card["warm_prefill_tokens"] - useful


async def test_the_scorecard_counts_a_warmup_an_edit_made_useless_as_wasted(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    # No sentence end: the typed text's warm-up alone, a full block past the context at least.
    typed = QUESTION.rstrip("?") + ", and which products did they buy most often in that quarter"
    app = await start_app()
    client = await started(app)
    await client.next("warm", lambda frame: frame["seq"] == 0)
    await client.send(type="input", text=typed, seq=1)
    await client.next("warm", lambda frame: frame["seq"] == 1)
    edited = typed.replace("Which customers", "Which of our clients")  # near the start
    await client.send(type="submit", text=edited, seq=2)
    done = await client.next("done")

    card = done["scorecard"]
    (final,) = fake.finals
    _context, text = fake.warmups
    assert done["cached_tokens"] == cached_of(final)
    assert card["warmed_tokens"] == valid_blocks(text.prompt, final.prompt, BLOCK) * BLOCK
    assert card["warmed_tokens"] < usable_blocks(len(text.prompt), BLOCK) * BLOCK  # moved back
    useful = useful_by_position(warmups_of(fake), final.prompt, cached_of(final), BLOCK)
    assert card["wasted_prefill_tokens"] == spent_by(fake) - useful
    # What the typed text's warm-up computed past the last block before the edit: wasted.
    shared = common_prefix_len(text.prompt, final.prompt) // BLOCK * BLOCK
    assert card["wasted_prefill_tokens"] >= len(text.prompt) - max(cached_of(text), shared)
    assert len(text.prompt) - max(cached_of(text), shared) > BLOCK


async def test_the_cold_estimate_is_null_until_the_fit_has_data(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True)  # a prefill-cost fit of its own, empty
    cost = app.services.prefill_cost
    client = await started(app, warmups="off")
    await client.send(type="submit", text="hello", seq=1)
    first = (await client.next("done"))["scorecard"]
    assert first["cold_ttft_ms"] is None
    assert first["saved_ms"] is None
    assert len(cost) == 1  # the final's own TTFT, learnt after its estimate

    for tokens in (200, 400, 800, 1600):
        cost.observe(tokens, 20.0 + tokens)  # what warm-ups of other sessions would teach
    expected = cost.estimate_ms(fake.finals[0].prompt_tokens)
    assert expected is not None
    await client.send(type="submit", text="hello", seq=2)
    done = await client.next("done")
    second = done["scorecard"]
    assert second["cold_ttft_ms"] == round(expected, 2)
    assert second["saved_ms"] == pytest.approx(second["cold_ttft_ms"] - done["ttft_ms"], abs=0.02)


async def test_warmups_and_finals_of_every_session_teach_the_shared_fit(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True)
    client = await started(app)
    await client.send(type="input", text=QUESTION, seq=1)
    await client.next("warm", lambda frame: frame["seq"] == 1)
    await client.send(type="submit", text=QUESTION, seq=1)
    done = await client.next("done")
    learnt = done["warm_pieces"]["landed"] + 1
    other = await started(app, warmups="off")
    await other.send(type="submit", text="hello", seq=1)
    await other.next("done")
    assert len(app.services.prefill_cost) == learnt + 1


# --- over HTTP (X-Session-Id), through the stock openai SDK ----------------------------------


async def sdk_for(app: App, session_id: str) -> AsyncOpenAI:
    http = await app.http()
    return AsyncOpenAI(
        base_url=f"{app.url}/v1", api_key="unused", http_client=http,
        default_headers={"X-Session-Id": session_id},
    )  # fmt: skip


async def typed_http_session(app: App, renderer: PromptRenderer) -> tuple[AsyncOpenAI, str]:
    """A session whose QUESTION is warmed whole, no warm-up left in flight; an SDK client."""
    system = system_where(renderer, QUESTION, pause_adds_block=True)
    client = await started(app, context={"system": system})
    session_id = str(client.of_type("ready")[0]["session_id"])
    await client.next("warm", lambda frame: frame["seq"] == 0)
    await client.send(type="input", text=QUESTION, seq=1)
    await client.next("warm", lambda frame: frame["submit_ready"])
    return await sdk_for(app, session_id), session_id


def extension(usage: Any) -> dict[str, Any]:
    assert usage is not None
    assert usage.model_extra is not None
    card: dict[str, Any] = usage.model_extra["prefill_ahead"]
    assert set(card) == FIELDS
    return card


async def test_a_non_streamed_http_answer_carries_the_scorecard_in_usage_and_headers(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app()
    sdk, _ = await typed_http_session(app, renderer)
    user = [{"role": "user", "content": QUESTION}]
    raw = await sdk.chat.completions.with_raw_response.create(model="m", messages=user)
    answer = raw.parse()
    card = extension(answer.usage)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens_details is not None
    assert card["hit_tokens"] == answer.usage.prompt_tokens_details.cached_tokens
    assert card["hit_tokens"] == cached_of(fake.finals[0]) > 0
    assert card["warmed_tokens"] == card["hit_tokens"]  # warmed whole, all hit
    assert card["warm_prefill_tokens"] == spent_by(fake)
    assert isinstance(card["ttft_ms"], float)  # streamed from vLLM all the same
    assert raw.headers["X-Prefill-Hit-Tokens"] == str(card["hit_tokens"])
    assert raw.headers["X-Prefill-Wasted-Prefill-Tokens"] == str(card["wasted_prefill_tokens"])
    assert raw.headers["X-Prefill-Speculative"] == "false"  # as in JSON
    assert raw.headers["X-Prefill-Ttft-Ms"] == str(card["ttft_ms"])

    again = await sdk.chat.completions.create(model="m", messages=user)
    assert extension(again.usage)["warm_prefill_tokens"] == 0  # no warm-up since the last


async def test_a_streamed_http_answer_carries_the_scorecard_in_its_usage_chunk(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app()
    sdk, _ = await typed_http_session(app, renderer)
    stream = await sdk.chat.completions.create(
        model="m", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(
        fake.reply
    )
    with_usage = [chunk for chunk in chunks if chunk.usage is not None]
    assert len(with_usage) == 1
    card = extension(with_usage[0].usage)
    assert card["hit_tokens"] == cached_of(fake.finals[0]) > 0
    assert card["warm_prefill_tokens"] == spent_by(fake)
    assert isinstance(card["ttft_ms"], float)


async def test_an_http_answer_for_a_session_keeps_the_openai_shape(
    start_app: StartApp, fake: FakeVLLM, renderer: PromptRenderer
) -> None:
    app = await start_app()
    _, session_id = await typed_http_session(app, renderer)
    http = await app.http()
    body = {"messages": [{"role": "user", "content": "hi"}]}
    response = await http.post(
        "/v1/chat/completions", json=body, headers={"X-Session-Id": session_id}
    )
    assert response.status_code == 200
    usage = response.json()["usage"]
    assert {"prompt_tokens", "completion_tokens", "prompt_tokens_details"} <= set(usage)
    assert set(usage["prefill_ahead"]) == FIELDS
