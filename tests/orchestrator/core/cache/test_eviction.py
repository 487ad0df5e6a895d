"""A session and what can take its cache away: vLLM's KV events (an eviction that cuts the
session's warmed chain takes back its belief and warms it again, a bounded number of times
while the user is idle; other evictions change nothing; without events the belief stays), a
warm-up cancelled before it ran, and the routing key that keeps a session on one replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from orchestrator.core.cache.kv_events import BlockRemoved
from orchestrator.core.engine.salt import routing_key
from orchestrator.core.engine.vllm_client import VLLMClient
from orchestrator.core.engine.watch import EngineWatch
from orchestrator.core.frames import ServerFrame
from orchestrator.core.planning.planner import WarmPlanner, usable_blocks
from orchestrator.core.warming.dispatch import WarmDispatcher
from orchestrator.core.warming.gate import WarmupGate
from orchestrator.core.warming.warmer import Warmer
from testkit.fake_vllm import FakeVLLM
from tests.fakes import SessionClient, wait_until
from tests.helpers import BLOCK, SETTLE_S, SYSTEM
from tests.kv_publisher import FakeKVPublisher, chain_of
from tests.sessions import App, StartApp, salt, started

LONG_SYSTEM = " ".join([SYSTEM] * 4)  # a context of a few blocks


@pytest.fixture
async def publisher() -> AsyncIterator[FakeKVPublisher]:
    fake = FakeKVPublisher()
    yield fake
    await fake.close()


async def app_with_events(start_app: StartApp, publisher: FakeKVPublisher, **more: object) -> App:
    app = await start_app(
        kv_events_url=publisher.url, kv_events_replay_url=publisher.replay_url, **more
    )
    feed = app.services.kv_feed
    assert feed is not None
    await wait_until(lambda: feed.live, what="the feed to go live")
    return app


async def warmed_context(app: App, fake: FakeVLLM) -> tuple[SessionClient, list[int]]:
    """A started session whose context warm-up landed; the tokens it warmed."""
    client = await started(app, context={"system": LONG_SYSTEM})
    await client.next("warm")
    return client, list(fake.warmups[-1].body["prompt"])


async def test_an_eviction_of_a_warmed_block_warms_the_context_again(
    start_app: StartApp, fake: FakeVLLM, publisher: FakeKVPublisher
) -> None:
    app = await app_with_events(start_app, publisher)
    client, tokens = await warmed_context(app, fake)
    feed = app.services.kv_feed
    assert feed is not None
    publisher.batch(chain_of(tokens, salt(), BLOCK))  # what vLLM says it stored
    await wait_until(lambda: feed.index.resident_tokens(salt(), tokens, BLOCK) > 0)
    sent = len(fake.warmups)
    publisher.batch(BlockRemoved([3], "GPU"))  # the third block of the chain goes
    warm = await client.next("warm")
    assert len(fake.warmups) == sent + 1
    assert fake.warmups[-1].body["prompt"] == tokens  # the same prefix, warmed again
    assert fake.warmups[-1].body["vllm_xargs"] == {"kv_cache_report_mode": "full"}
    # vLLM's answer to the re-warm says its blocks are back, though no event says so yet
    assert warm["cached_tokens"] == usable_blocks(len(tokens), BLOCK) * BLOCK
    assert app.services.rewarms_after_eviction == 1
    assert app.services.cache_view_status()["source"] == "kv-events"


async def test_evictions_elsewhere_change_nothing(
    start_app: StartApp, fake: FakeVLLM, publisher: FakeKVPublisher
) -> None:
    app = await app_with_events(start_app, publisher)
    _client, tokens = await warmed_context(app, fake)
    publisher.batch(chain_of(tokens, salt(), BLOCK))
    publisher.batch(chain_of(tokens, salt("someone-else"), BLOCK, first=100))
    sent = len(fake.warmups)
    publisher.batch(BlockRemoved([101, 5000], "GPU"))  # another salt's block, an unknown one
    await asyncio.sleep(SETTLE_S)
    assert len(fake.warmups) == sent
    assert app.services.rewarms_after_eviction == 0


async def test_an_idle_session_is_rewarmed_only_so_often_between_keystrokes(
    start_app: StartApp, fake: FakeVLLM, publisher: FakeKVPublisher
) -> None:
    app = await app_with_events(start_app, publisher, rewarms_per_pause=1)
    client, tokens = await warmed_context(app, fake)
    for round_ in range(2):
        publisher.batch(chain_of(tokens, salt(), BLOCK, first=10 * round_ + 1))
        publisher.batch(BlockRemoved([10 * round_ + 1], "GPU"))
    await client.next("warm")  # the first eviction
    await asyncio.sleep(SETTLE_S)  # not the second: the budget is spent until a keystroke
    assert app.services.rewarms_after_eviction == 1
    await client.send(type="input", text="a", seq=1)
    publisher.batch(chain_of(tokens, salt(), BLOCK, first=50))
    publisher.batch(BlockRemoved([50], "GPU"))
    await wait_until(lambda: app.services.rewarms_after_eviction == 2)


async def test_without_events_the_session_keeps_its_belief(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True)
    assert app.services.kv_feed is None
    assert app.services.cache_view_status() == {"source": "belief", "state": "off"}
    _client, _ = await warmed_context(app, fake)
    assert "vllm_xargs" not in fake.warmups[-1].body


async def test_a_warm_up_cancelled_before_it_ran_gives_back_its_slot() -> None:
    """`settle` in the very tick that created a warm-up's task: the task never runs its body,
    yet the engine watch's slot and the planner's in-flight warm-up are given back."""
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    http = httpx.AsyncClient(transport=transport, base_url="http://vllm")
    engine = EngineWatch(max_warmups_in_flight=1)
    dispatcher = WarmDispatcher(VLLMClient(http), WarmupGate(100.0), engine, priority=10)
    planner = WarmPlanner(BLOCK)

    async def send(frame: ServerFrame) -> None:
        return None

    warmer = Warmer(dispatcher, send, "s", "m", "salt", planner, lambda: None)
    warmer.offer(planner.on_input(list(range(3 * BLOCK)), seq=1))
    assert engine.in_flight == 1
    warmer.settle(list(range(BLOCK)))  # not yet dispatched: dropped
    task = warmer.task
    assert task is not None
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)  # its done callbacks
    assert task.cancelled()
    assert engine.in_flight == 0
    assert planner.in_flight is None
    await http.aclose()


async def test_a_sessions_requests_carry_its_routing_key(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    """Warm-ups and the final request of a session go upstream with one key (a router sends
    them to one replica); another session's key differs."""
    app = await start_app()
    first, second = await started(app), await started(app)
    await first.next("warm")
    await second.next("warm")
    await first.send(type="submit", text="How many rows?", seq=1)
    await first.next("done")
    ready = [client.of_type("ready")[0]["session_id"] for client in (first, second)]
    keys = [routing_key(app.settings.server_secret, "anonymous", sid) for sid in ready]
    routes = {record.route for record in fake.completions}
    assert routes == set(keys)
    assert keys[0] != keys[1]
    assert all(record.route == keys[0] for record in fake.finals)
