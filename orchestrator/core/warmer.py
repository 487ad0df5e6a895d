"""A session's warm-ups: the planner's decisions sent to vLLM, one at a time.

Each warm-up goes through the dispatcher (`dispatch.py`: engine watch, global gate, vLLM)
under the session's salt; one turned away there, or failed, is retried by itself once the
back-off ends, with what the session's warm strategy wants warmed by then (`replan`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orchestrator.core.dispatch import WarmDispatcher
from orchestrator.core.frames import Error, Send, Warm
from orchestrator.core.planner import WarmPlanner, WarmUp
from orchestrator.core.scorecard import WarmSpan
from orchestrator.errors import ServiceError, UpstreamError, UpstreamRejected, UpstreamUnavailable

log = logging.getLogger(__name__)
RETRY_MIN_S = 0.1


@dataclass
class WarmStats:
    requests: int = 0
    prefill_tokens: int = 0  # prompt tokens the warm-ups made vLLM compute (not cache hits)
    failures: int = 0
    spans: list[WarmSpan] = field(default_factory=list)  # what each one computed (scorecard)


class Warmer:
    def __init__(
        self,
        dispatcher: WarmDispatcher,
        send: Send,
        name: str,
        model: str,
        salt: str,
        planner: WarmPlanner,
        replan: Callable[[], WarmUp | None],
        resident: Callable[[Sequence[int]], int | None] = lambda tokens: None,
        route: str | None = None,
        on_landed: Callable[[Sequence[int]], None] = lambda tokens: None,
    ) -> None:
        self.dispatcher = dispatcher
        self.send = send
        self.name = name
        self.model = model
        self.salt = salt
        self.planner = planner
        self.replan = replan  # asks the session for its current candidate (retries)
        self.route = route  # the session's routing key (replicas behind a router)
        self.resident = resident  # what vLLM's KV events say it holds of a prompt (None: no word)
        self.on_landed = on_landed  # a warm-up landed: its tokens (the prefix trace)
        self.stats = WarmStats()
        self.task: asyncio.Task[None] | None = None
        self.dispatched = False  # the current warm-up has passed the gate
        self.held = False  # a submit is under way: its own request caches the prompt
        self.retry_timer: asyncio.TimerHandle | None = None
        self.numbers = itertools.count()
        self.failures = 0  # warm-ups of this session that failed in a row
        self.preempted = False  # the current warm-up gave way to another session's final
        self.running: WarmUp | None = None  # the warm-up whose task has started
        self.gate_passed_at: float | None = None  # when the current warm-up went to vLLM

    def offer(self, warm: WarmUp | None) -> None:
        """Send `warm` (a planner decision) unless held, paused or over the bound."""
        while warm is not None and self.held:
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

    def schedule_retry(self, delay_s: float) -> None:
        if self.retry_timer is None:
            loop = asyncio.get_running_loop()
            self.retry_timer = loop.call_later(delay_s, self.retry)

    def retry(self) -> None:
        self.retry_timer = None
        self.offer(self.replan())

    def resume(self) -> None:
        """vLLM is back (restarted, its cache empty): warm again now, not after a back-off."""
        self.failures = 0
        self.planner.forget_cache()
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        if self.task is None or self.task.done():
            self.retry()

    def rewarm(self) -> bool:
        """vLLM evicted warmed blocks: warm what the session wants warmed now, unless a
        warm-up is already on its way (it recomputes them) or a submit holds warm-ups.
        True if one was sent."""
        if self.held or self.retry_timer is not None:
            return False
        if self.task is not None and not self.task.done():
            return False
        before = self.task
        self.offer(self.replan())
        return self.task is not before

    def settle(self, final: Sequence[int]) -> None:
        """Before the final request `final`: hold new warm-ups and stop those it does not need.

        A warm-up still queued at the gate is dropped. One already sent keeps running only if
        it adds a block `final` can use, and the final request is sent at once beside it,
        never after it: if vLLM is computing the warm-up, the final is scheduled in the next
        step and finds those blocks cached; if the warm-up still waits in vLLM's queue, the
        final (higher priority) goes first and the warm-up then hits the final's blocks.
        Waiting for the warm-up's answer would only add its decode step and a round trip.
        """
        self.held = True
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        task, sent = self.task, self.planner.in_flight
        if task is None or task.done():
            return
        if not self.dispatched or sent is None or not self.planner.adds_to(sent, final):
            task.cancel()

    def on_gate_passed(self) -> None:
        self.dispatched = True
        self.gate_passed_at = time.perf_counter()
        self.dispatcher.finals.track(self)

    def preempt(self) -> None:
        """Another session's final request starts: give way, and send this again later."""
        if self.task is not None and not self.task.done():
            self.preempted = True
            self.task.cancel()

    def release(self) -> None:
        self.held = False

    def cancel(self) -> None:
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        if self.task is not None:
            self.task.cancel()

    async def run(self, warm: WarmUp) -> None:
        self.running = warm
        verdict: bool | None = None
        try:
            verdict = await self.send_warm(warm)
        finally:
            self.dispatched = False
            self.dispatcher.finals.untrack(self)
            self.dispatcher.finish(verdict)
            if verdict is None:  # cancelled: the planner must not wait for it
                self.planner.on_warm_done(warm, ok=False)
            if self.preempted:  # warm it again once the finals have their first tokens
                self.preempted = False
                self.schedule_retry(RETRY_MIN_S)

    async def send_warm(self, warm: WarmUp) -> bool | None:
        """Send one warm-up; the verdict for the engine watch (None: no verdict)."""
        started = time.perf_counter()
        request_id = f"warm-{self.name}-{warm.seq}-{next(self.numbers)}"
        try:
            usage = await self.dispatcher.send(
                self.model, list(warm.tokens), self.salt, request_id, self.on_gate_passed,
                self.route,
            )  # fmt: skip
        except ServiceError as error:
            self.stats.failures += 1
            log.warning("warm-up failed: %s", error.message)
            self.planner.on_warm_done(warm, ok=False)
            if isinstance(error, UpstreamError) and not isinstance(error, UpstreamRejected):
                # vLLM (or the replica behind a router that held this session) may have lost
                # its cache: warm from the start, wherever the next warm-up lands.
                self.planner.forget_cache()
            self.failures += 1  # this session's own back-off: 0.1, 0.2, 0.4 ... 5 s
            own = min(5.0, RETRY_MIN_S * 2 ** (self.failures - 1))
            self.schedule_retry(max(own, self.dispatcher.pause_s()))
            await self.send(Error.of(error, code="warmup_failed"))
            # Only an engine that refuses connections pauses everyone's warm-ups; a slow
            # answer may be our own lag under load, and the watcher judges that.
            return False if isinstance(error, UpstreamUnavailable) else None
        self.failures = 0
        self.on_landed(warm.tokens)
        self.stats.requests += 1
        self.stats.prefill_tokens += usage.prompt_tokens - usage.cached_tokens
        now = time.perf_counter()
        elapsed_ms = (now - started) * 1000
        sent_ms = None if self.gate_passed_at is None else (now - self.gate_passed_at) * 1000
        self.stats.spans.append(WarmSpan.of(warm.tokens, usage, self.planner.block_size, sent_ms))
        following = self.planner.on_warm_done(warm, ok=True)
        # What vLLM holds: its KV events may trail the answer by a moment, and the answer just
        # said this warm-up's blocks are there, so the belief counts too.
        held = self.resident(self.planner.current)
        cached = max(self.planner.cached_tokens, held or 0)
        await self.send(Warm.of(warm.seq, len(warm.tokens), cached, elapsed_ms, warm.submit_ready))
        self.offer(following)
        return True
