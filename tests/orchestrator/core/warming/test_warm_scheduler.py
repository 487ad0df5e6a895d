"""The warm-up scheduler (`core/warming/scheduler.py`) and the pieces a warm-up is cut into
(`planner.split_pieces`), without a network: pieces are held open by the test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from orchestrator.core.planning.planner import split_pieces, usable_blocks
from orchestrator.core.warming.scheduler import WarmClass, WarmScheduler, pieces_in_flight
from orchestrator.errors import RateLimited

B = 4


# --- pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [2, 5, 9, 17, 40, 41, 42, 100])
@pytest.mark.parametrize("cached", [0, 1, 3, 20])
def test_pieces_compute_at_most_a_piece_each_and_end_past_a_full_block(
    length: int, cached: int
) -> None:
    tokens = tuple(range(length))
    pieces = split_pieces(tokens, cached, B, piece_tokens=3 * B)
    last = usable_blocks(length, B)
    assert pieces, "always at least one request"
    assert all(tokens[: len(piece)] == piece for piece in pieces)  # prefixes, growing
    assert [len(p) for p in pieces] == sorted({len(p) for p in pieces})
    if last == 0:
        assert pieces == [tokens]  # nothing to cache: sent whole (it is short)
        return
    assert all((len(piece) - 1) % B == 0 for piece in pieces)  # k * B + 1: no partial block
    assert usable_blocks(len(pieces[-1]), B) == last  # every usable block, in the end
    starts = [min(cached, last)] + [usable_blocks(len(p), B) for p in pieces[:-1]]
    for start, piece in zip(starts, pieces, strict=True):
        assert usable_blocks(len(piece), B) - start <= 3  # at most 3 blocks new each


def test_a_piece_size_that_is_not_whole_blocks_rounds_down() -> None:
    pieces = split_pieces(tuple(range(33)), 0, B, piece_tokens=10)  # 2 blocks a piece
    assert [len(p) for p in pieces] == [9, 17, 25, 33]


@pytest.mark.parametrize(
    ("step", "chunk", "piece", "expected"),
    [
        (512, 128, 256, 2),
        (512, 128, 64, 4),
        (512, None, 256, 1),
        (8192, 0, 512, 8),
        (64, 0, 512, 1),
    ],
)
def test_pieces_in_flight_fill_at_most_half_a_step(
    step: int, chunk: int | None, piece: int, expected: int
) -> None:
    assert pieces_in_flight(step, chunk, piece) == expected


# --- the bound and the queues ---------------------------------------------------------------


class Harness:
    """Pieces that start through the scheduler and stay in flight until released."""

    def __init__(self, scheduler: WarmScheduler) -> None:
        self.scheduler = scheduler
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def submit(
        self, name: str, tenant: str = "t", klass: WarmClass = WarmClass.INTERACTIVE
    ) -> None:
        self.release[name] = asyncio.Event()
        self.tasks[name] = asyncio.create_task(self.run(name, tenant, klass))

    async def run(self, name: str, tenant: str, klass: WarmClass) -> None:
        async with self.scheduler.piece(name, tenant, klass):
            self.started.append(name)
            await self.release[name].wait()

    async def done(self, name: str) -> None:
        self.release[name].set()
        await self.tasks[name]
        await settle()

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def harness(**settings: object) -> AsyncIterator[Harness]:
    rig = Harness(WarmScheduler(**settings))  # type: ignore[arg-type]
    try:
        yield rig
    finally:
        await rig.close()


async def test_no_more_pieces_in_flight_than_the_bound() -> None:
    async with harness(limit=2) as rig:
        for name in "abcde":
            rig.submit(name)
        await settle()
        assert rig.started == ["a", "b"]
        assert rig.scheduler.queued() == 3
        await rig.done("a")
        assert rig.started == ["a", "b", "c"]
        assert len(rig.scheduler.running) == 2


async def test_turns_go_round_robin_across_tenants_not_first_come() -> None:
    async with harness(limit=1) as rig:
        rig.submit("first", tenant="busy")
        await settle()
        for name in ("busy-1", "busy-2", "busy-3"):
            rig.submit(name, tenant="busy")
        rig.submit("quiet-1", tenant="quiet")
        await settle()
        order = ["first", "busy-1", "quiet-1", "busy-2", "busy-3"]
        for name in order[:-1]:
            await rig.done(name)
        assert rig.started == order


async def test_a_waiting_final_leaves_room_but_never_stops_warmups() -> None:
    async with harness(limit=3, limit_while_finals=1, final_room_s=60) as rig:
        rig.submit("a")
        rig.submit("b")
        await settle()
        ticket = rig.scheduler.final_started("someone", "t")
        await settle()
        assert not any(rig.tasks[name].done() for name in "ab")  # short pieces: they finish
        rig.submit("c")
        await settle()
        assert rig.started == ["a", "b"]  # 2 running >= 1 while the final waits
        await rig.done("a")
        await rig.done("b")
        assert rig.started == ["a", "b", "c"]  # one at a time, never none
        rig.submit("d")
        await settle()
        assert "d" not in rig.started
        ticket.first_token()
        await settle()
        assert rig.started == ["a", "b", "c", "d"]  # the whole bound again
        ticket.close()


async def test_a_final_that_never_streams_gives_the_room_back_after_final_room_s() -> None:
    async with harness(limit=2, limit_while_finals=1, final_room_s=0.05) as rig:
        ticket = rig.scheduler.final_started(None, "t")  # e.g. a non-streamed request
        rig.submit("a")
        rig.submit("b")
        await settle()
        assert rig.started == ["a"]
        await asyncio.sleep(0.1)
        await settle()
        assert rig.started == ["a", "b"]
        assert rig.scheduler.waiting_finals == 0
        ticket.close()


async def test_background_pieces_run_alone_and_only_when_nobody_waits() -> None:
    async with harness(limit=3) as rig:
        rig.submit("rewarm-1", klass=WarmClass.BACKGROUND)
        rig.submit("rewarm-2", klass=WarmClass.BACKGROUND)
        await settle()
        assert rig.started == ["rewarm-1"]  # one at a time
        ticket = rig.scheduler.final_started("user", "t")
        await rig.done("rewarm-1")
        assert rig.started == ["rewarm-1"]  # a final is waiting: the next one waits too
        rig.submit("typing")
        rig.submit("keep", klass=WarmClass.KEEP)
        await settle()
        assert rig.started == ["rewarm-1", "typing"]  # the room while a final waits: one
        ticket.close()
        await settle()
        # the final has its token: the keep-alive first, then, nobody waiting, the re-warm
        assert rig.started == ["rewarm-1", "typing", "keep", "rewarm-2"]


async def test_a_piece_cancelled_while_waiting_or_just_granted_leaves_no_slot_taken() -> None:
    async with harness(limit=1) as rig:
        rig.submit("a")
        rig.submit("b")
        rig.submit("c")
        await settle()
        rig.tasks["b"].cancel()  # waiting
        await rig.done("a")
        assert rig.started == ["a", "c"]
        await rig.done("c")
        assert rig.scheduler.running == {}
        assert rig.scheduler.queued() == 0


async def test_a_tenant_has_at_most_its_finals_at_once() -> None:
    async with harness(max_finals_per_tenant=2) as rig:
        first = rig.scheduler.final_started(None, "a")
        rig.scheduler.final_started(None, "a")
        with pytest.raises(RateLimited):
            rig.scheduler.final_started(None, "a")
        rig.scheduler.final_started(None, "b").close()  # others are not limited by it
        first.close()
        rig.scheduler.final_started(None, "a").close()


async def test_a_finals_overlap_with_warmup_pieces_is_measured() -> None:
    waited: list[float] = []
    async with harness(limit=2, on_final_waited=waited.append) as rig:
        idle = rig.scheduler.final_started(None, "t")
        await asyncio.sleep(0.02)
        idle.close()
        rig.submit("a")
        await settle()
        busy = rig.scheduler.final_started(None, "t")
        await asyncio.sleep(0.02)
        busy.close()
    assert waited[0] == 0.0
    assert waited[1] >= 0.02
