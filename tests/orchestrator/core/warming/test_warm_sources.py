"""Every source of warm-ups goes through the one scheduler, in pieces: a session's typing,
`POST /v1/warm`, a named state's creation and the state keeper's touch (the start-up re-warm:
`test_popularity.py` checks it asks for the background class)."""

from __future__ import annotations

import asyncio

import httpx

from orchestrator.core.engine.vllm_client import VLLMClient
from orchestrator.core.engine.watch import EngineWatch
from orchestrator.core.planning.planner import usable_blocks
from orchestrator.core.warming.dispatch import WarmDispatcher
from orchestrator.core.warming.gate import WarmupGate
from orchestrator.core.warming.scheduler import WarmClass, WarmScheduler
from testkit.fake_vllm import FakeVLLM
from tests.fakes import wait_until
from tests.helpers import BLOCK
from tests.sessions import StartApp, started


async def test_every_warmup_source_goes_through_the_scheduler_in_pieces(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(warm_piece_tokens=2 * BLOCK)
    scheduler = app.services.dispatcher.scheduler
    http = await app.http()
    prompt = list(range(1, 10 * BLOCK + 5))
    pieces = -(-usable_blocks(len(prompt), BLOCK) // 2)

    reply = await http.post("/v1/warm", json={"prompt": prompt})
    assert reply.status_code == 200, reply.text
    assert reply.json()["cached_tokens"] == 10 * BLOCK
    assert len(fake.warmups) == pieces
    assert scheduler.counts.sent == pieces

    state = await http.post("/v1/states", json={"prompt": [7, *prompt[1:]]})
    assert state.status_code == 201, state.text
    assert len(fake.warmups) == 2 * pieces
    keeper = app.services.state_keeper
    assert keeper is not None
    (kept,) = keeper.live_states()
    await keeper.touch(kept)
    assert len(fake.warmups) == 3 * pieces

    client = await started(app)
    await client.next("warm")
    await wait_until(lambda: not scheduler.running, what="the pieces to end")
    assert scheduler.counts.sent == len(fake.warmups)
    assert scheduler.queued() == 0


async def test_a_final_during_the_rewarm_has_its_first_token_before_the_next_piece(
    fake: FakeVLLM,
) -> None:
    async with httpx.AsyncClient(base_url=fake.url, timeout=10) as http:
        scheduler = WarmScheduler(limit=2)
        dispatcher = WarmDispatcher(
            VLLMClient(http), WarmupGate(1000), EngineWatch(8), 10, scheduler, piece_tokens=BLOCK
        )
        fake.hold_warmups()
        rewarm = asyncio.create_task(
            dispatcher.warm_once(
                "fake-model",
                list(range(1, 4 * BLOCK + 2)),
                "salt",
                klass=WarmClass.BACKGROUND,
                block_size=BLOCK,
            )
        )
        await wait_until(lambda: fake.warm_in_flight == 1, what="the re-warm's first piece")
        ticket = scheduler.final_started("user", "tenant")  # a user's final is sent now
        fake.release_warmups()
        await wait_until(lambda: not scheduler.running, what="the first piece to land")
        await asyncio.sleep(0.05)
        assert len(fake.warmups) == 1  # the re-warm waits for the final's first token
        ticket.first_token()
        usage = await asyncio.wait_for(rewarm, timeout=5)
        ticket.close()
    assert len(fake.warmups) == 4
    assert usage.prompt_tokens == 4 * BLOCK + 1
