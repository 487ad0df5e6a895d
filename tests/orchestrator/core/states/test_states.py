"""The rules of named prefix states (`core/states/state.py`), the in-memory store, and how a state's
chat turns continue, with the real tokenizer."""

from __future__ import annotations

import pytest

from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.core.states.state import (
    State,
    StateBudgetExceeded,
    chat_suffix,
    check_budget,
    check_length,
    distinct_tokens,
    new_state_id,
    render_turns,
    suffix_roles,
    ttl_for,
    warm_prefix,
)
from orchestrator.core.states.store import MemoryStates
from orchestrator.errors import InvalidRequest

B = 4


def state(tokens: list[int], *, tenant: str = "a", expires_at: float = 100.0) -> State:
    return State(new_state_id(), tenant, "salt", tuple(tokens), 0.0, expires_at)


def test_ids_are_unguessable_and_distinct() -> None:
    ids = {new_state_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("st_") and len(i) >= 24 for i in ids)


def test_ttl_defaults_and_is_bounded() -> None:
    assert ttl_for(None, 60, 600) == 60
    assert ttl_for(600, 60, 600) == 600
    with pytest.raises(InvalidRequest) as error:
        ttl_for(601, 60, 600)
    assert error.value.param == "ttl_s"


def test_warm_prefix_is_block_aligned() -> None:
    assert warm_prefix(list(range(4)), B) is None  # (4 - 1) // 4: no block would be kept
    assert warm_prefix(list(range(5)), B) == [0, 1, 2, 3, 4]
    assert warm_prefix(list(range(11)), B) == list(range(9))


def test_shared_blocks_count_once() -> None:
    parent = list(range(8))
    fork = [*parent, 100, 101, 102, 103, 104]
    assert distinct_tokens([parent], B) == 8
    assert distinct_tokens([parent, fork], B) == 8 + 4 + 1  # one new block, one partial
    other = [9, *parent[1:]]
    assert distinct_tokens([parent, other], B) == 16  # a different first block: no sharing


def test_budget_of_states_and_tokens() -> None:
    held = [state(list(range(8)))]
    check_budget(held, [*range(8), 50, 51, 52, 53], B, max_states=2, max_tokens=12)
    with pytest.raises(StateBudgetExceeded) as tokens:
        check_budget(held, [*range(8), 50, 51, 52, 53, 54], B, max_states=2, max_tokens=12)
    assert tokens.value.status_code == 429
    with pytest.raises(StateBudgetExceeded) as states:
        check_budget(held, [1], B, max_states=1, max_tokens=100)
    assert "1 states" in states.value.message


def test_length_is_checked_against_the_model() -> None:
    check_length([1, 2], 3)
    with pytest.raises(InvalidRequest) as long:
        check_length([1, 2, 3], 3)
    assert long.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequest):
        check_length([], None)


async def test_the_memory_store_filters_by_tenant_and_expiry() -> None:
    store = MemoryStates()
    mine, theirs, old = state([1]), state([2], tenant="b"), state([3], expires_at=5.0)
    for item in (mine, theirs, old):
        await store.put(item)
    assert await store.get("a", mine.id, now=10.0) == mine
    assert await store.get("a", theirs.id, now=10.0) is None
    assert await store.get("a", old.id, now=10.0) is None
    assert await store.of_tenant("a", now=10.0) == [mine]
    assert not await store.delete("a", theirs.id)
    assert await store.purge(now=10.0) == 1
    assert {s.id for s in await store.live(now=10.0)} == {mine.id, theirs.id}


def test_a_chat_state_and_its_continuation_make_the_whole_conversation(
    renderer: PromptRenderer,
) -> None:
    system = [{"role": "system", "content": "You answer from the manual. " * 5}]
    turns = [{"role": "user", "content": "What is in section 2?"}]
    state_tokens = renderer.encode(chat_suffix(renderer, None, system, generation=False))
    roles = suffix_roles(None, system)
    assert roles == ("system",)
    suffix = renderer.encode(chat_suffix(renderer, roles, turns, generation=True))
    whole = renderer.encode(render_turns(renderer, [*system, *turns], generation=True))
    assert [*state_tokens, *suffix] == whole
    assert renderer.decode(suffix).endswith("<|im_start|>assistant\n")


def test_an_empty_chat_suffix_opens_the_answer(renderer: PromptRenderer) -> None:
    suffix = chat_suffix(renderer, ("system", "user"), [], generation=True)
    assert suffix == "<|im_start|>assistant\n"
    with pytest.raises(InvalidRequest):
        chat_suffix(renderer, None, [], generation=True)


def test_a_system_prompt_state_is_a_prefix_of_a_session_over_it(
    renderer: PromptRenderer,
) -> None:
    """The page's use: a session started with the state's system prompt hits its blocks."""
    system = "Answer from this document only. " + "The shop opens at nine. " * 20
    messages = [{"role": "system", "content": system}]
    state_tokens = renderer.encode(chat_suffix(renderer, None, messages, generation=False))
    head = renderer.session_prompt(system).head_tokens
    assert list(head[: len(state_tokens)]) == state_tokens
