"""Every source of warm-ups goes through the one scheduler, in pieces: a session's typing,
`POST /v1/warm`, a named state's creation and the state keeper's touch (the start-up re-warm:
`test_popularity.py` checks it asks for the background class)."""

from __future__ import annotations

from eval.fake_vllm import FakeVLLM
from orchestrator.core.planner import usable_blocks
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
