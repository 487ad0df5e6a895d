"""The popularity index (`core/popularity/index.py`), the rows it is built from
(`core/popularity/popularity.py`) and the re-warm that uses it (`core/cache/rewarm.py`), without an
engine."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import SecretStr

from orchestrator.core.cache.rewarm import Rewarmer
from orchestrator.core.engine.salt import tenant_salt
from orchestrator.core.engine.vllm_client import EngineFacts, Usage
from orchestrator.core.popularity.index import (
    PopularityIndex,
    Scope,
    block_chain,
    reusable_prefix,
    within_budget,
)
from orchestrator.core.popularity.popularity import (
    MemoryPopularityStore,
    Popularity,
    PopularityPolicy,
    PopularityRow,
)
from orchestrator.core.warming.scheduler import WarmClass
from orchestrator.errors import RateLimited, UpstreamUnavailable

B = 4  # a small block size keeps the token lists readable
HOUR = 3600.0
A, Z = Scope("tenant-a"), Scope("tenant-z")


def prompt(context: int, question: int, blocks: int = 5, extra: int = 2) -> list[int]:
    """`blocks` full blocks of a context, then `extra` blocks (and 1 token) of a question."""
    head = [1000 * context + i for i in range(blocks * B)]
    return head + [100_000 * context + 100 * question + i for i in range(extra * B + 1)]


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def observe(index: PopularityIndex, scope: Scope, tokens: Sequence[int], now: float) -> None:
    prefix = reusable_prefix(tokens, index.block_size)
    index.observe(scope, block_chain(scope, prefix, index.block_size), prefix, now)


# -- chains ---------------------------------------------------------------------------------


def test_chains_are_per_scope_and_a_prefix_has_the_prefix_of_the_chain() -> None:
    tokens = list(range(3 * B + 2))
    chain = block_chain(A, tokens, B)
    assert len(chain) == 3  # full blocks only
    assert block_chain(A, tokens[: 2 * B], B) == chain[:2]
    assert block_chain(A, [9, *tokens[1:]], B)[0] != chain[0]
    assert not set(block_chain(Z, tokens, B)) & set(chain)  # another tenant: no hash in common
    assert not set(block_chain(Scope("tenant-a", "ns"), tokens, B)) & set(chain)


def test_only_the_reusable_full_blocks_are_kept() -> None:
    assert reusable_prefix(list(range(2 * B)), B) == list(range(B))  # the last token recomputed
    assert reusable_prefix(list(range(2 * B + 1)), B) == list(range(2 * B))
    assert reusable_prefix(list(range(B)), B) == []


# -- decay ----------------------------------------------------------------------------------


def test_scores_halve_every_half_life_and_new_requests_add_to_what_is_left() -> None:
    index = PopularityIndex(B, half_life_s=HOUR)
    t0 = 1_000_000.0
    for question in range(4):
        observe(index, A, prompt(1, question), t0)
    [context] = [c for c in index.contexts(A, t0) if len(c.tokens) == 5 * B]
    assert context.score == pytest.approx(4.0)
    [later] = [c for c in index.contexts(A, t0 + HOUR) if len(c.tokens) == 5 * B]
    assert later.score == pytest.approx(2.0)
    observe(index, A, prompt(1, 9), t0 + 2 * HOUR)
    [now] = [c for c in index.contexts(A, t0 + 2 * HOUR) if len(c.tokens) == 5 * B]
    assert now.score == pytest.approx(1.0 + 1.0)
    assert now.last_seen == t0 + 2 * HOUR


def test_what_nobody_asked_for_in_a_long_time_is_pruned() -> None:
    index = PopularityIndex(B, half_life_s=HOUR)
    observe(index, A, prompt(1, 0), 0.0)
    observe(index, Z, prompt(2, 0), 20 * HOUR)
    index.prune(20 * HOUR, min_score=1e-3)
    assert index.scopes() == [Z]
    assert index.nodes == 7


def test_the_index_stays_under_its_node_bound_keeping_the_hottest() -> None:
    index = PopularityIndex(B, half_life_s=HOUR, max_nodes=40)
    for question in range(30):  # one shared context, then many one-off questions
        observe(index, A, prompt(1, question), float(question))
    assert index.nodes <= 40
    top = index.contexts(A, 30.0)
    assert top[0].tokens == tuple(prompt(1, 0)[: 5 * B])  # the shared context survived


# -- ranking --------------------------------------------------------------------------------


def test_the_shared_prefix_of_many_requests_is_a_context_its_blocks_before_are_not() -> None:
    index = PopularityIndex(B, half_life_s=HOUR)
    for question in range(3):
        observe(index, A, prompt(1, question), 0.0)
    contexts = index.contexts(A, 0.0)
    sizes = sorted(len(c.tokens) for c in contexts)
    assert sizes == [5 * B, 7 * B, 7 * B, 7 * B]  # the branch point and the three questions
    assert contexts[0].tokens == tuple(prompt(1, 0)[: 5 * B])
    assert contexts[0].score == pytest.approx(3.0)


def test_ranked_by_expected_prefill_saved_score_times_tokens() -> None:
    index = PopularityIndex(B, half_life_s=HOUR)
    for question in range(6):  # a short context, often
        observe(index, A, prompt(1, question, blocks=2), 0.0)
    for question in range(2):  # a long one, seldom
        observe(index, A, prompt(2, question, blocks=10), 0.0)
    best = [c for c in index.top(0.0, 2)]
    assert [len(c.tokens) for c in best] == [10 * B, 2 * B]  # 2 x 40 > 6 x 8
    assert best[0].expected_saved == pytest.approx(2 * 10 * B)
    # Time moves the ranking: the long one was asked long ago, the short one just now.
    index = PopularityIndex(B, half_life_s=HOUR)
    for question in range(2):
        observe(index, A, prompt(2, question, blocks=10), 0.0)
    for question in range(6):
        observe(index, A, prompt(1, question, blocks=2), 3 * HOUR)
    ranked = [len(c.tokens) for c in index.top(3 * HOUR, 10) if len(c.tokens) in (2 * B, 10 * B)]
    assert ranked == [2 * B, 10 * B]  # 6 x 8 > 2 x 40 / 8


def test_min_score_leaves_out_one_offs() -> None:
    index = PopularityIndex(B, half_life_s=HOUR)
    observe(index, A, prompt(1, 0), 0.0)
    observe(index, A, prompt(2, 0), 0.0)
    observe(index, A, prompt(2, 1), 0.0)
    assert [len(c.tokens) for c in index.top(0.0, 5, min_score=1.5)] == [5 * B]


# -- budget ---------------------------------------------------------------------------------


def test_budget_counts_new_tokens_skips_covered_ones_and_passes_over_what_does_not_fit() -> None:
    index = PopularityIndex(B, half_life_s=HOUR)
    for question in (0, 0, 1):
        observe(index, A, prompt(1, question, blocks=10), 0.0)  # 40 shared tokens, score 3
    for question in range(3):
        observe(index, A, prompt(2, question, blocks=3), 0.0)  # 12 shared tokens, score 3
    ranked = index.top(0.0, 10)
    assert [len(c.tokens) for c in ranked[:4]] == [10 * B, 12 * B, 12 * B, 3 * B]
    chosen = within_budget(ranked, 10 * B + 2 * B + 2 * B + 3 * B)
    assert [(len(s.context.tokens), s.new_tokens) for s in chosen] == [
        (10 * B, 10 * B),  # the long context
        (12 * B, 2 * B),  # question 0 below it: only its own blocks
        (12 * B, 2 * B),  # question 1
        (3 * B, 3 * B),  # the short context
    ]
    small = within_budget(ranked, 5 * B)  # the long one does not fit: the short one does
    assert [len(s.context.tokens) for s in small] == [3 * B, 5 * B]
    assert sum(s.new_tokens for s in small) == 5 * B
    assert within_budget(ranked, 0) == []


def test_a_chosen_context_covers_its_prefixes() -> None:
    index = PopularityIndex(B, half_life_s=HOUR)
    observe(index, A, prompt(1, 0, blocks=2, extra=8), 0.0)  # a long one, ranked first
    observe(index, A, prompt(1, 1, blocks=2, extra=0), 0.0)  # then its first blocks alone
    ranked = index.top(0.0, 10)
    assert len(ranked[0].tokens) > len(ranked[-1].tokens)
    chosen = within_budget(ranked, 1000)
    assert [len(s.context.tokens) for s in chosen] == [10 * B]  # the prefix needs no warm-up


# -- tenant separation ----------------------------------------------------------------------


def test_one_tenants_requests_never_show_in_anothers_top() -> None:
    index = PopularityIndex(B, half_life_s=HOUR)
    same = prompt(1, 0)
    for _ in range(5):
        observe(index, A, same, 0.0)
    observe(index, Z, prompt(2, 0), 0.0)
    assert {c.scope for c in index.top(0.0, 10, tenant="tenant-z")} == {Z}
    assert index.top(0.0, 10, tenant="tenant-q") == []
    observe(index, Z, same, 0.0)  # the very same tokens: Z's own count, not A's
    z_same = [c for c in index.top(0.0, 10, tenant="tenant-z") if c.tokens[0] == same[0]]
    assert [c.score for c in z_same] == [pytest.approx(1.0)]


# -- the rows -------------------------------------------------------------------------------


def test_popularity_records_whole_blocks_only_and_never_an_opted_out_tenant() -> None:
    clock = Clock()
    store = MemoryPopularityStore()
    popularity = Popularity(store, PopularityPolicy(opt_out=frozenset({"tenant-z"})), clock)
    popularity.record("tenant-a", None, prompt(1, 0), B, "final", "demo")
    popularity.record("tenant-a", None, list(range(B)), B, "final")  # no full reusable block
    popularity.record("tenant-z", None, prompt(1, 0), B, "final")
    assert popularity.recorded == 1
    [row] = popularity.pending
    assert row.scope == A
    assert row.kind == "final"
    assert row.label == "demo"
    assert row.tokens == tuple(prompt(1, 0)[: 7 * B])
    assert row.chain == tuple(block_chain(A, row.tokens, B))
    assert popularity.top(B, 5, "tenant-z") == []
    asyncio.run(popularity.flush())
    assert store.rows == [row]
    assert popularity.pending == []


def test_warm_ups_count_for_less_than_finals() -> None:
    popularity = Popularity(MemoryPopularityStore(), PopularityPolicy(warm_weight=0.25), Clock())
    popularity.record("tenant-a", None, prompt(1, 0), B, "final")
    popularity.record("tenant-a", None, prompt(1, 0, extra=0), B, "warm")
    scores = {len(c.tokens): c.score for c in popularity.top(B, 5)}
    assert scores == {7 * B: pytest.approx(1.0), 5 * B: pytest.approx(1.25)}


def test_load_applies_retention_and_opt_outs_then_rebuilds_the_index() -> None:
    clock = Clock()
    old, recent = clock.now - 10 * HOUR, clock.now - HOUR

    def row(scope: Scope, at: float) -> PopularityRow:
        tokens = tuple(prompt(1, 0)[: 5 * B])
        return PopularityRow(scope, "final", B, tuple(block_chain(scope, tokens, B)), tokens, at)

    store = MemoryPopularityStore([row(A, old), row(A, recent), row(Z, recent)])
    opt_out = frozenset({"tenant-z"})
    policy = PopularityPolicy(
        retention_s=5 * HOUR, opt_out=opt_out, half_life_s=HOUR, min_score=0.1
    )
    popularity = Popularity(store, policy, clock)
    asyncio.run(popularity.load())
    assert store.rows == [row(A, recent)]  # the old row and the opted-out tenant's: deleted
    [context] = popularity.top(B, 5)
    assert context.scope == A
    assert context.score == pytest.approx(0.5)  # one request, an hour ago


# -- the re-warm ----------------------------------------------------------------------------

SECRET = SecretStr("rewarm-test-secret")
FACTS = EngineFacts(model="m", block_size=B, max_model_len=None)


class FakeDispatcher:
    """What the re-warm asks of `WarmDispatcher`: `warm_once`, `pause_s`."""

    def __init__(self, hang: bool = False, refuse: int = 0, down: bool = False) -> None:
        self.sent: list[tuple[str, list[int], str]] = []
        self.hang, self.refuse, self.down = hang, refuse, down

    async def warm_once(self, model: str, tokens: list[int], salt: str, **how: Any) -> Usage:
        assert how["klass"] is WarmClass.BACKGROUND  # the lowest share
        if self.refuse:
            self.refuse -= 1
            raise RateLimited("busy")
        if self.down:
            raise UpstreamUnavailable("vLLM is not answering")
        self.sent.append((model, tokens, salt))
        if self.hang:
            await asyncio.Event().wait()
        return Usage(len(tokens), 1, 0)

    def pause_s(self) -> float:
        return 0.0


def rewarmer(popularity: Popularity, dispatcher: FakeDispatcher, budget_s: float = 60) -> Rewarmer:
    async def facts() -> EngineFacts:
        return FACTS

    return Rewarmer(popularity, dispatcher, facts, SECRET, budget_s)  # type: ignore[arg-type]


def traffic(policy: PopularityPolicy) -> Popularity:
    popularity = Popularity(MemoryPopularityStore(), policy, Clock())
    for question in range(3):
        popularity.record("tenant-a", None, prompt(1, question, blocks=10), B, "final")
    for question in range(2):
        popularity.record("tenant-z", "team", prompt(2, question, blocks=6), B, "final")
    return popularity


def test_rewarm_warms_each_context_under_its_own_tenants_salt() -> None:
    popularity = traffic(PopularityPolicy(top_k=1))
    dispatcher = FakeDispatcher()
    progress = asyncio.run(rewarmer(popularity, dispatcher).run("engine_recovered"))
    assert progress.state == "done"
    assert progress.warmed == progress.planned == 2
    salt_a = tenant_salt(SECRET, "tenant-a")
    salt_z = tenant_salt(SECRET, "tenant-z", "team")
    assert [(salt, len(tokens)) for _, tokens, salt in dispatcher.sent] == [
        (salt_a, 10 * B + 1),  # the whole blocks, and one token to leave every one
        (salt_z, 6 * B + 1),
    ]
    assert dispatcher.sent[0][1][: 10 * B] == prompt(1, 0, blocks=10)[: 10 * B]
    assert progress.planned_tokens == 16 * B
    assert progress.prefill_tokens == 16 * B + 2


def test_rewarm_of_one_tenant_sends_nothing_of_anothers() -> None:
    popularity = traffic(PopularityPolicy(top_k=5))
    dispatcher = FakeDispatcher()
    asyncio.run(rewarmer(popularity, dispatcher).run("cli", tenant="tenant-z"))
    assert dispatcher.sent
    assert {salt for _, _, salt in dispatcher.sent} == {tenant_salt(SECRET, "tenant-z", "team")}
    assert all(tokens[0] == prompt(2, 0)[0] for _, tokens, _ in dispatcher.sent)


def test_rewarm_stays_within_its_token_budget() -> None:
    popularity = traffic(PopularityPolicy(top_k=5, budget_tokens=8 * B))
    dispatcher = FakeDispatcher()
    progress = asyncio.run(rewarmer(popularity, dispatcher).run("start"))
    # tenant-a's 10-block context does not fit; tenant-z's 6-block one does, and then one of
    # its questions, whose 8 blocks add 2 to it.
    assert [len(tokens) for _, tokens, _ in dispatcher.sent] == [6 * B + 1, 8 * B + 1]
    assert progress.planned_tokens == 8 * B


def test_rewarm_stops_when_its_time_budget_is_spent() -> None:
    popularity = traffic(PopularityPolicy(top_k=1))
    dispatcher = FakeDispatcher(hang=True)
    progress = asyncio.run(rewarmer(popularity, dispatcher, budget_s=0.05).run("start"))
    assert progress.state == "done"
    assert (progress.warmed, progress.skipped) == (0, 2)
    assert "time budget" in (progress.error or "")
    assert len(dispatcher.sent) == 1  # the second was never sent


def test_rewarm_waits_for_admission_and_for_an_engine_that_is_up() -> None:
    popularity = traffic(PopularityPolicy(top_k=1))
    dispatcher = FakeDispatcher(refuse=2)
    progress = asyncio.run(rewarmer(popularity, dispatcher).run("start"))
    assert progress.warmed == 2
    down = asyncio.run(rewarmer(popularity, FakeDispatcher(down=True)).run("start"))
    assert down.state == "waiting_for_engine"
    assert down.warmed == 0
    assert down.skipped == 2


def test_an_empty_index_plans_nothing() -> None:
    popularity = Popularity(MemoryPopularityStore(), PopularityPolicy(), Clock())
    assert not popularity.wanted()
    dispatcher = FakeDispatcher()
    progress = asyncio.run(rewarmer(popularity, dispatcher).run("start"))
    assert progress.state == "done"
    assert progress.planned == 0
    assert dispatcher.sent == []
    assert math.isclose(progress.prefill_tokens, 0)
