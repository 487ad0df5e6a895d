"""vLLM's KV events: the resident-block index (pure) and the ZMQ feed against a publisher
that speaks vLLM's wire format (PUB + replay ROUTER)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from orchestrator.core.cache.kv_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
    KVEventFeed,
    apply_batch,
)
from orchestrator.core.cache.resident import Eviction, ResidentBlocks
from tests.fakes import wait_until as wait_for
from tests.kv_publisher import FakeKVPublisher, stored

B = 4
PROMPT = list(range(100, 117))  # 4 full blocks of 4, and one token more


def chain(index: ResidentBlocks, salt: str = "s") -> None:
    index.stored([1, 2], None, PROMPT[:8], B, [(salt,), None])
    index.stored([3, 4], 2, PROMPT[8:16], B, [None, None])


def test_a_stored_chain_is_resident_under_its_salt_only() -> None:
    index = ResidentBlocks()
    chain(index)
    assert index.resident_tokens("s", PROMPT, B) == 16
    assert index.resident_tokens("other", PROMPT, B) == 0
    assert index.resident_tokens("s", PROMPT[:10], B) == 8  # whole blocks only
    edited = [*PROMPT[:5], 0, *PROMPT[6:]]
    assert index.resident_tokens("s", edited, B) == 4  # the walk stops at the edited block


def test_removing_a_block_cuts_the_chain_there_and_says_whose_it_was() -> None:
    index = ResidentBlocks()
    chain(index)
    eviction = Eviction()
    index.removed([3, 999], eviction)  # 999: never seen (stored before we listened)
    assert eviction.salts == {"s"}
    assert index.resident_tokens("s", PROMPT, B) == 8
    assert index.cut_at("s", PROMPT, B, eviction) == 8
    assert index.cut_at("s", PROMPT[:8], B, eviction) is None  # not this chain's blocks
    assert index.cut_at("other", PROMPT, B, eviction) is None


def test_a_chain_known_only_in_part_is_not_called_cut() -> None:
    index = ResidentBlocks()
    index.stored([3, 4], 2, PROMPT[8:16], B, None)  # its first blocks came before we listened
    eviction = Eviction()
    index.removed([4], eviction)
    assert index.cut_at("s", PROMPT, B, eviction) is None


def test_a_block_stored_again_is_resident_again_and_clear_forgets_everything() -> None:
    index = ResidentBlocks()
    chain(index)
    index.removed([1], Eviction())
    assert index.resident_tokens("s", PROMPT, B) == 0
    index.stored([1], None, PROMPT[:4], B, [("s",)])  # same hash: the children hang on it
    assert index.resident_tokens("s", PROMPT, B) == 16
    index.clear()
    assert len(index) == 0
    assert index.resident_tokens("s", PROMPT, B) == 0


def test_apply_batch_skips_other_tiers_and_honours_all_blocks_cleared() -> None:
    index = ResidentBlocks()
    offloaded = BlockStored([7], None, PROMPT[:4], B, "CPU", [("s",)])
    apply_batch(index, KVEventBatch(0.0, [offloaded]))
    assert len(index) == 0
    apply_batch(index, KVEventBatch(0.0, [stored([1, 2], None, PROMPT[:8], "s")]))
    assert index.resident_tokens("s", PROMPT, B) == 8
    eviction = apply_batch(index, KVEventBatch(0.0, [BlockRemoved([2], "GPU")]))
    assert eviction.salts == {"s"}
    assert index.resident_tokens("s", PROMPT, B) == 4
    apply_batch(index, KVEventBatch(0.0, [AllBlocksCleared()]))
    assert len(index) == 0


@pytest.fixture
async def publisher() -> AsyncIterator[FakeKVPublisher]:
    fake = FakeKVPublisher()
    yield fake
    await fake.close()


async def started_feed(
    publisher: FakeKVPublisher, evictions: list[Eviction]
) -> tuple[KVEventFeed, asyncio.Task[None]]:
    feed = KVEventFeed(publisher.url, publisher.replay_url, evictions.append)
    task = asyncio.create_task(feed.run())
    await wait_for(lambda: feed.live)  # the replay answered: the feed is live
    await asyncio.sleep(0.2)  # ZMQ's SUB takes a moment to join
    return feed, task


async def test_the_feed_replays_what_came_before_it_then_follows(
    publisher: FakeKVPublisher,
) -> None:
    publisher.batch(stored([1, 2], None, PROMPT[:8], "s"))  # before anyone listened
    evictions: list[Eviction] = []
    feed, task = await started_feed(publisher, evictions)
    try:
        assert publisher.replays == [0]
        assert feed.index.resident_tokens("s", PROMPT, B) == 8
        publisher.batch(stored([3], 2, PROMPT[8:12]))
        await wait_for(lambda: feed.index.resident_tokens("s", PROMPT, B) == 12)
        publisher.batch(BlockRemoved([2], "GPU"))
        await wait_for(lambda: len(evictions) == 1)
        assert evictions[0].salts == {"s"}
        assert feed.status()["source"] == "kv-events"
    finally:
        task.cancel()


async def test_a_gap_in_the_sequence_is_filled_from_the_replay_endpoint(
    publisher: FakeKVPublisher,
) -> None:
    feed, task = await started_feed(publisher, [])
    try:
        publisher.batch(stored([1], None, PROMPT[:4], "s"))
        publisher.batch(stored([2], 1, PROMPT[4:8]), publish=False)  # lost on the way
        publisher.batch(stored([3], 2, PROMPT[8:12]))
        await wait_for(lambda: feed.index.resident_tokens("s", PROMPT, B) == 12)
        assert feed.gaps == 1
        assert publisher.replays[-1] == 1
        assert feed.last_seq == 2
    finally:
        task.cancel()


async def test_a_restarted_vllm_empties_the_index(publisher: FakeKVPublisher) -> None:
    feed, task = await started_feed(publisher, [])
    try:
        publisher.batch(stored([1, 2], None, PROMPT[:8], "s"))
        publisher.batch(stored([3], 2, PROMPT[8:12]))
        await wait_for(lambda: feed.last_seq == 1)
        publisher.restart()
        await asyncio.sleep(0.01)  # a later timestamp than the last batch seen
        publisher.batch(stored([9], None, PROMPT[:4], "t"))
        await wait_for(lambda: feed.index.resident_tokens("t", PROMPT, B) == 4)
        assert feed.index.resident_tokens("s", PROMPT, B) == 0
    finally:
        task.cancel()


async def test_without_a_publisher_the_feed_waits_and_sessions_keep_their_belief() -> None:
    feed = KVEventFeed("tcp://127.0.0.1:1", None, lambda eviction: None)
    task = asyncio.create_task(feed.run())
    await asyncio.sleep(0.2)
    assert not feed.live
    assert feed.status()["source"] == "belief"
    task.cancel()
