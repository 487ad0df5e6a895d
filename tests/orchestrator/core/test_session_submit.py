"""A session's submit against the recording fake vLLM: the final streams, what it does to
warm-ups in flight or waiting (its own and other sessions'), cancel, and a socket closed
mid-stream. The set-up (priorities set) is `test_session.py`'s.
"""

from __future__ import annotations

import asyncio

from testkit.fake_vllm import FakeVLLM
from tests.fakes import SessionClient, session_tasks, wait_until
from tests.helpers import QUESTION, SETTLE_S
from tests.orchestrator.core.test_session import orchestrator_defaults
from tests.sessions import App, StartApp, started

__all__ = ["orchestrator_defaults"]  # test_session.py's set-up, for these tests too

# --- submit, cancel, close ------------------------------------------------------------------


async def test_submit_streams_tokens_then_done_with_usage_and_warm_stats(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await started(app)
    await client.send(type="input", text=QUESTION, seq=1)
    await client.next("warm", lambda frame: frame["seq"] == 1)

    await client.send(type="submit", text=QUESTION, seq=1)
    done = await client.next("done")
    tokens = client.of_type("token")
    assert [frame["text"] for frame in tokens] == list(fake.reply)
    assert client.frames.index(tokens[-1]) < client.frames.index(done)

    (final,) = fake.finals
    assert final.usage is not None
    assert done["finish_reason"] == "stop"
    assert done["text"] == "".join(fake.reply)
    assert isinstance(done["ttft_ms"], float)
    assert done["ttft_ms"] > 0
    assert done["prompt_tokens"] == len(final.prompt) == final.usage["prompt_tokens"]
    assert done["cached_tokens"] == final.usage["prompt_tokens_details"]["cached_tokens"]
    assert done["cached_tokens"] > 0
    warm_usages = [warm.usage for warm in fake.warmups if warm.usage is not None]
    assert done["warm_pieces"]["landed"] == len(warm_usages) == 2
    assert done["scorecard"]["warm_prefill_tokens"] == sum(
        usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"]
        for usage in warm_usages
    )


async def submit_beside_a_typed_warmup(app: App, fake: FakeVLLM) -> SessionClient:
    """A session whose typed text's warm-up is held in the fake, then submitted."""
    client = await started(app)
    await client.next("warm", lambda frame: frame["seq"] == 0)
    fake.hold_warmups()
    await client.send(type="input", text=QUESTION, seq=1)
    await wait_until(lambda: fake.warm_in_flight == 1, what="the typed text's warm-up")
    await client.send(type="submit", text=QUESTION, seq=1)
    return client


async def test_submit_cancels_its_own_piece_in_flight_and_never_waits_for_it(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    client = await submit_beside_a_typed_warmup(await start_app(), fake)
    # Not almost done (no cost known yet): vLLM would compute its blocks twice, once for it
    # and once for the final beside it. The final goes out at once.
    await wait_until(lambda: len(fake.finals) == 1, what="the final request")
    await wait_until(lambda: fake.warm_in_flight == 0, what="the warm-up to be cancelled")
    assert fake.warmups[-1].disconnected
    fake.release_warmups()
    assert (await client.next("done"))["finish_reason"] == "stop"


async def test_submit_lets_its_own_piece_finish_when_it_is_almost_done(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True)
    cost = app.app.state.services.prefill_cost
    cost.observe(0, 0.0)  # prefill costs next to nothing: any piece in vLLM is almost done
    cost.observe(10_000, 0.001)
    client = await submit_beside_a_typed_warmup(app, fake)
    await wait_until(lambda: len(fake.finals) == 1, what="the final request, at once")
    assert fake.warm_in_flight == 1
    warmed = fake.warmups[-1].prompt
    assert fake.finals[0].prompt[: len(warmed)] == warmed
    fake.release_warmups()
    await client.next("done")
    await wait_until(lambda: fake.warm_in_flight == 0, what="the warm-up to end")
    assert not fake.warmups[-1].disconnected


async def test_submit_stops_a_warmup_in_flight_that_the_final_cannot_use(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await started(app)
    await client.next("warm", lambda frame: frame["seq"] == 0)
    fake.hold_warmups()
    await client.send(type="input", text=QUESTION, seq=1)
    await wait_until(lambda: fake.warm_in_flight == 1, what="the typed text's warm-up")

    other = "Something else entirely, which shares nothing with the text being warmed"
    await client.send(type="submit", text=other, seq=2)
    done = await client.next("done")
    await wait_until(lambda: fake.warm_in_flight == 0, what="the warm-up to be aborted")
    assert fake.warmups[-1].disconnected  # vLLM sees the disconnect and aborts it
    assert done["finish_reason"] == "stop"


async def test_another_sessions_final_leaves_a_running_piece_alone(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    typist, submitter = await started(app), await started(app, warmups="off")
    await typist.next("warm", lambda frame: frame["seq"] == 0)
    fake.hold_warmups()
    await typist.send(type="input", text=QUESTION, seq=1)
    await wait_until(lambda: fake.warm_in_flight == 1, what="the typist's warm-up")
    running = fake.warmups[-1]

    await submitter.send(type="submit", text="How many orders are there?", seq=1)
    done = await submitter.next("done")
    assert done["finish_reason"] == "stop"
    assert not running.disconnected  # a piece is short: finals share steps with it
    fake.release_warmups()
    await typist.next("warm", lambda frame: frame["seq"] == 1)
    assert len(fake.warmups) == 2


async def test_submit_drops_a_warmup_still_waiting_at_the_gate(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(warmups_per_second=0.5)  # one warm-up, then one per 2 s
    client = await started(app)
    await client.next("warm", lambda frame: frame["seq"] == 0)
    await client.send(type="input", text=QUESTION, seq=1)  # its warm-up waits at the gate
    await client.barrier()
    await client.send(type="submit", text=QUESTION, seq=1)
    done = await client.next("done", within=1.5)  # long before the gate would open
    await asyncio.sleep(SETTLE_S)

    assert len(fake.warmups) == 1  # only the context
    assert done["warm_pieces"]["landed"] == 1
    assert not session_tasks()


async def test_cancel_closes_the_upstream_stream_and_the_session_submits_again(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.stream_hang = True
    app = await start_app()
    client = await started(app, warmups="off")
    await client.send(type="submit", text="hello")
    first = await client.next("token")
    await client.send(type="cancel")

    done = await client.next("done")
    assert done["finish_reason"] == "cancelled"
    assert done["text"] == first["text"]
    await wait_until(lambda: fake.stream_disconnects == 1, what="the upstream stream to close")
    assert fake.streams_open == 0

    fake.stream_hang = False
    await client.send(type="submit", text="hello again")
    done = await client.next("done")
    assert done["finish_reason"] == "stop"
    assert len(fake.finals) == 2


async def test_cancel_sent_right_after_submit_still_ends_with_done(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.stream_hang = True
    app = await start_app()
    client = await started(app, warmups="off")
    await client.send(type="submit", text="hello")
    await client.send(type="cancel")  # before the generation had a chance to start

    done = await client.next("done", within=2)
    assert done["finish_reason"] == "cancelled"
    await wait_until(lambda: not session_tasks(), what="the generation task to end")


async def test_cancel_right_after_submit_beside_a_warmup_still_ends_with_done(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    client = await started(app)
    await client.next("warm", lambda frame: frame["seq"] == 0)
    fake.hold_warmups()
    await client.send(type="input", text=QUESTION, seq=1)
    await wait_until(lambda: fake.warm_in_flight == 1, what="the typed text's warm-up")
    await client.send(type="submit", text=QUESTION, seq=1)
    await client.send(type="cancel")

    done = await client.next("done", within=2)
    assert done["finish_reason"] == "cancelled"
    fake.release_warmups()


async def test_closing_the_socket_mid_stream_closes_the_upstream_stream(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.stream_hang = True
    app = await start_app()
    client = await started(app, warmups="off")
    await client.send(type="submit", text="hello")
    await client.next("token")

    await client.ws.close()
    await wait_until(lambda: fake.stream_disconnects == 1, what="the upstream stream to close")
    await wait_until(lambda: not session_tasks(), what="the session's tasks to end")
    assert fake.streams_open == 0
