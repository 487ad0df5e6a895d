"""A session's warm-ups: the planner's decisions sent to vLLM, one at a time, in pieces.

A warm-up goes out as block-aligned pieces (`planner.split_pieces`), each through the
dispatcher (`dispatch.py`: engine watch, the warm-up scheduler, the rate gate, vLLM) under
the session's salt, and each credited to the planner as it lands: cancelling a warm-up loses
at most its piece in flight. Newer text the planner holds pending takes over between two
pieces. One turned away, or failed, is retried by itself once the back-off ends, with what
the session's warm strategy wants warmed by then (`replan`).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orchestrator.core.engine.backoff import Backoff
from orchestrator.core.engine.vllm_client import Usage
from orchestrator.core.frames import Error, Send, Warm
from orchestrator.core.planning.planner import WarmPlanner, WarmUp, split_pieces, valid_blocks
from orchestrator.core.warming.dispatch import WarmDispatcher, WarmRequest
from orchestrator.core.warming.scheduler import WarmClass
from orchestrator.core.warming.scorecard import WarmSpan
from orchestrator.errors import ServiceError, UpstreamError, UpstreamRejected, UpstreamUnavailable

log = logging.getLogger(__name__)
RETRY_MIN_S = 0.1
ALMOST_DONE = 0.8  # of a piece's expected cost: past this, a submit lets it finish


@dataclass
class WarmStats:
    """What a session's warm-ups did since its last submit (the scorecard's and the answer's)."""

    requests: int = 0  # pieces that landed
    sent: int = 0  # pieces sent to vLLM
    cancelled: int = 0  # pieces called off after they were sent
    prefill_tokens: int = 0  # prompt tokens the landed pieces made vLLM compute (not hits)
    failures: int = 0
    spans: list[WarmSpan] = field(default_factory=list)  # what each one computed (scorecard)

    def add(self, piece: Sequence[int], usage: Usage, block_size: int, started: float) -> None:
        """A piece landed: vLLM's usage for it, sent at `started` (`time.perf_counter`)."""
        self.requests += 1
        self.prefill_tokens += max(0, usage.prompt_tokens - usage.cached_tokens)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.spans.append(WarmSpan.of(piece, usage, block_size, elapsed_ms))


class WarmerState(enum.Enum):
    """Whether a session's warmer sends the warm-ups offered to it.

    ```
    Warmer's step           moves
    settle (submit begins)  OPEN -> HELD
    release (submit ended)  HELD -> OPEN
    ```

    What runs, what is due and what vLLM is computing are the warmer's handles (`task`,
    `retry_timer`, `piece`), not its state.
    """

    OPEN = "open"  # offered warm-ups go out
    HELD = "held"  # its submit is under way (it caches the prompt): offered warm-ups are dropped


@dataclass(frozen=True)
class SentPiece:
    """The piece of this session's warm-up that vLLM is computing."""

    tokens: tuple[int, ...]
    new_tokens: int  # not cached when it was sent
    sent_at: float


class Warmer:
    """Sends a session's warm-ups to vLLM, one at a time and piece by piece, retries those
    turned away or failed, and reports each landed piece to the session's client."""

    def __init__(
        self,
        dispatcher: WarmDispatcher,
        send_frame: Send,
        name: str,
        model: str,
        salt: str,
        planner: WarmPlanner,
        replan: Callable[[], WarmUp | None],
        resident: Callable[[Sequence[int]], int | None] = lambda tokens: None,
        route: str | None = None,
        on_landed: Callable[[Sequence[int]], None] = lambda tokens: None,
        tenant: str = "",
    ) -> None:
        self.dispatcher = dispatcher
        self.send_frame = send_frame  # a frame to the session's client
        self.name = name
        self.model = model
        self.salt = salt
        self.tenant = tenant  # the scheduler's round robin is across tenants first
        self.klass = WarmClass.INTERACTIVE
        self.planner = planner
        self.replan = replan  # asks the session for its current candidate (retries)
        self.route = route  # the session's routing key (replicas behind a router)
        self.resident = resident  # what vLLM's KV events say it holds of a prompt (None: no word)
        self.on_landed = on_landed  # a piece landed: its tokens (popularity)
        self.stats = WarmStats()
        self.task: asyncio.Task[None] | None = None
        self.piece: SentPiece | None = None  # the piece vLLM is computing now
        self.state = WarmerState.OPEN
        self.retry_timer: asyncio.TimerHandle | None = None
        self.numbers = itertools.count()
        self.backoff = Backoff(first_s=RETRY_MIN_S, max_s=5.0)  # failed warm-ups in a row
        self.running: WarmUp | None = None  # the warm-up whose task has started

    def offer(self, warm: WarmUp | None) -> None:
        """Send `warm` (a planner decision) unless held, paused or over the bound."""
        while warm is not None and self.state is WarmerState.HELD:
            warm = self.planner.on_warm_done(warm, ok=False)
        if warm is None:
            return
        if not self.dispatcher.try_admit():
            self.planner.on_warm_done(warm, ok=False)
            self.schedule_retry(max(RETRY_MIN_S, self.dispatcher.pause_s()))
            return
        self.task = asyncio.create_task(self.run(warm))
        self.task.add_done_callback(functools.partial(self.if_never_ran, warm))

    def if_never_ran(self, warm: WarmUp, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never runs its body (nor its `finally`):
        give back what `offer` took for it."""
        if task.cancelled() and self.running is not warm:
            self.dispatcher.finish(None)
            self.planner.on_warm_done(warm, ok=False)

    def warming(self) -> bool:
        """A warm-up of this session is running (its task has not ended)."""
        return self.task is not None and not self.task.done()

    def retry_due(self) -> bool:
        """A retry waits for its back-off to end."""
        return self.retry_timer is not None

    def schedule_retry(self, delay_s: float) -> None:
        """Offer what the session wants warmed once `delay_s` has passed (unless a retry is
        already due)."""
        if not self.retry_due():
            loop = asyncio.get_running_loop()
            self.retry_timer = loop.call_later(delay_s, self.retry)

    def cancel_retry(self) -> None:
        """No retry is due any more."""
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None

    def retry(self) -> None:
        """The back-off has ended: offer what the session wants warmed now."""
        self.retry_timer = None
        self.offer(self.replan())

    def resume(self) -> None:
        """vLLM is back (restarted, its cache empty): warm again now, not after a back-off."""
        self.backoff.succeeded()
        self.planner.forget_cache()
        self.cancel_retry()
        if not self.warming():
            self.retry()

    def rewarm(self) -> bool:
        """vLLM evicted warmed blocks: warm what the session wants warmed now, unless a
        warm-up is already on its way (it recomputes them) or a submit holds warm-ups.
        True if one was sent."""
        if self.state is WarmerState.HELD or self.retry_due() or self.warming():
            return False
        before = self.task
        self.offer(self.replan())
        return self.task is not before

    def settle(self, final: Sequence[int]) -> None:
        """Before the final request `final`: hold new warm-ups and stop those it does not need.

        The final request never waits for a warm-up. A piece still queued is dropped. One
        running in vLLM is cancelled unless it is almost done and adds a block `final` uses:
        otherwise vLLM would compute the same blocks twice, once for it and once for the
        final beside it (the blocks it finished before the cancel stay cached).
        """
        self.state = WarmerState.HELD
        self.cancel_retry()
        task, piece = self.task, self.piece
        if task is None or task.done():
            return
        if piece is None or not self.piece_almost_done(piece, final):
            task.cancel()

    def piece_almost_done(self, piece: SentPiece, final: Sequence[int]) -> bool:
        """The piece in vLLM adds a block to `final` and has run for `ALMOST_DONE` of what
        its new tokens cost on the idle engine (unknown cost: not almost done)."""
        have = valid_blocks(self.planner.confirmed, final, self.planner.block_size)
        if valid_blocks(piece.tokens, final, self.planner.block_size) <= have:
            return False
        expected_ms = self.dispatcher.cost.estimate_ms(piece.new_tokens)
        if expected_ms is None:
            return False
        return (time.perf_counter() - piece.sent_at) * 1000 >= ALMOST_DONE * expected_ms

    def on_piece_sent(self, tokens: Sequence[int], new_tokens: int) -> None:
        """The dispatcher handed a piece to vLLM: it is the piece in flight now."""
        self.piece = SentPiece(tuple(tokens), new_tokens, time.perf_counter())
        self.stats.sent += 1

    def release(self) -> None:
        """This session's submit has ended: offered warm-ups go out again."""
        self.state = WarmerState.OPEN

    async def idle(self) -> None:
        """Return once no warm-up of this session is running (a retry waiting for its
        back-off is not waited for)."""
        while self.task is not None and not self.task.done():
            await asyncio.wait({self.task})

    def cancel(self) -> None:
        """The session ends or starts over: no retry, and the running warm-up is called off."""
        self.cancel_retry()
        if self.task is not None:
            self.task.cancel()

    async def run(self, warm: WarmUp) -> None:
        """The task of one admitted warm-up: its pieces, then its verdict to the engine watch."""
        self.running = warm
        verdict: bool | None = None
        try:
            verdict = await self.send_pieces(warm)
        finally:
            self.piece = None
            self.dispatcher.finish(verdict)
            if verdict is None:  # cancelled: the planner must not wait for it
                self.planner.on_warm_done(warm, ok=False)

    def cached_blocks(self, tokens: Sequence[int]) -> int:
        """Full blocks of `tokens` cached: vLLM's word (KV events) or the planner's belief."""
        block = self.planner.block_size
        believed = valid_blocks(self.planner.confirmed, tokens, block)
        return max(believed, (self.resident(tokens) or 0) // block)

    async def send_pieces(self, warm: WarmUp) -> bool | None:
        """Send `warm` piece by piece, each credited as it lands; stop early for newer text
        the planner holds pending (it goes on from there). The verdict for the engine watch
        (None: no verdict)."""
        pieces = split_pieces(
            warm.tokens,
            self.cached_blocks(warm.tokens),
            self.planner.block_size,
            self.dispatcher.piece_tokens,
        )
        for index, piece in enumerate(pieces):
            if index and self.planner.pending is not None:
                self.offer(self.planner.on_warm_done(warm, ok=True, complete=False))
                return True
            last = index == len(pieces) - 1
            verdict = await self.send_piece(warm, piece, last)
            if verdict is not True:
                return verdict
        self.offer(self.planner.on_warm_done(warm, ok=True))
        return True

    async def send_piece(self, warm: WarmUp, piece: tuple[int, ...], last: bool) -> bool | None:
        """Send one piece of `warm`; the verdict for the engine watch (None: no verdict)."""
        started = time.perf_counter()
        request_id = f"warm-{self.name}-{warm.seq}-{next(self.numbers)}"
        new_tokens = len(piece) - self.cached_blocks(piece) * self.planner.block_size
        try:
            usage = await self.dispatcher.send_to_vllm(
                WarmRequest(
                    self.model,
                    list(piece),
                    self.salt,
                    self.route,
                    self.name,
                    self.tenant,
                    self.klass,
                    request_id,
                ),
                on_sent=lambda: self.on_piece_sent(piece, new_tokens),
            )
        except ServiceError as error:
            await self.piece_failed(warm, error)
            return False if isinstance(error, UpstreamUnavailable) else None
        except asyncio.CancelledError:
            if self.piece is not None:
                self.stats.cancelled += 1
            raise
        self.backoff.succeeded()
        self.piece = None
        self.planner.credit(piece)
        self.on_landed(piece)
        self.stats.add(piece, usage, self.planner.block_size, started)
        # What vLLM holds: its KV events may trail the answer by a moment, and the answer just
        # said this piece's blocks are there, so the belief counts too.
        held = self.resident(self.planner.current)
        cached = max(self.planner.believed_cached(self.planner.current), held or 0)
        elapsed_ms = (time.perf_counter() - started) * 1000
        ready = warm.submit_ready and last
        await self.send_frame(Warm.of(warm.seq, len(piece), cached, elapsed_ms, ready))
        return True

    async def piece_failed(self, warm: WarmUp, error: ServiceError) -> None:
        """A piece failed: count it, back off (longer at each failure in a row), tell the
        client."""
        self.stats.failures += 1
        log.warning("warm-up failed: %s", error.message)
        self.planner.on_warm_done(warm, ok=False)
        if isinstance(error, UpstreamError) and not isinstance(error, UpstreamRejected):
            # vLLM (or the replica behind a router that held this session) may have lost
            # its cache: warm from the start, wherever the next warm-up lands.
            self.planner.forget_cache()
        own = self.backoff.failed()  # this session's own back-off: 0.1, 0.2, 0.4 ... 5 s
        self.schedule_retry(max(own, self.dispatcher.pause_s()))
        await self.send_frame(Error.of(error, code="warmup_failed"))
