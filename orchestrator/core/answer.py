"""A session's final request: the submit-ready prompt streamed back as `token` frames, then
one `done` frame (with the SQL fields when the session's context adds them).

Before it is sent, the session's warm-ups are settled (`Warmer.settle`: its piece in vLLM is
cancelled unless almost done, it never waits for one), and until its first token the
warm-up scheduler lets fewer pieces into the engine (`warm_scheduler.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Callable
from typing import Any

from orchestrator.core.dispatch import REPORT_FULL_CHAINS
from orchestrator.core.frames import Done, Error, Scorecard, Send, Token, WarmPieces
from orchestrator.core.prefill_cost import PrefillCost
from orchestrator.core.scorecard import ScoreSheet
from orchestrator.core.speculation import Outcome, Speculation, Speculator, attached_chunks
from orchestrator.core.started import Started
from orchestrator.core.stopping import Stopping, stop_fields
from orchestrator.core.vllm_client import Usage, VLLMClient
from orchestrator.core.warm_scheduler import FinalTicket, WarmScheduler
from orchestrator.core.warmer import WarmStats
from orchestrator.errors import RateLimited, UpstreamError
from orchestrator.settings import Settings


class FinalAnswer:
    """At most one final request of a session at a time; cancellable by the client."""

    def __init__(
        self,
        vllm: VLLMClient,
        scheduler: WarmScheduler,
        send: Send,
        session_id: str,
        tenant: str,
        settings: Settings,
        cost: PrefillCost | None = None,
        speculator: Speculator | None = None,
    ) -> None:
        self.vllm = vllm
        self.speculator = speculator  # the session's speculative finals, to attach to
        self.cost = PrefillCost() if cost is None else cost  # the application's shared fit
        self.scheduler = scheduler
        self.tenant = tenant
        self.send = send
        self.session_id = session_id
        self.settings = settings
        self.task: asyncio.Task[None] | None = None
        self.cancel_requested = False
        self.notice: asyncio.Future[None] | None = None  # a `done` sent for an early cancel
        self.numbers = itertools.count()  # request ids: final-<session>-<seq>-<n>

    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def begin(
        self, started: Started, tokens: list[int], received: float, seq: Callable[[], int]
    ) -> None:
        """Send `tokens` as the final request; `seq` is the session's latest input seq."""
        self.task = asyncio.create_task(self.generate(started, tokens, received, seq))
        self.task.add_done_callback(
            functools.partial(self.after_generation, started, tokens, received, seq)
        )

    def cancel(self) -> None:
        """The client's cancel: the answer ends with a `done` frame, finish_reason cancelled."""
        if self.task is not None and not self.task.done():
            self.cancel_requested = True
            self.task.cancel()

    def stop(self) -> None:
        """A new start, or the session closing: nobody waits for a `done` any more."""
        if self.task is not None:
            self.task.cancel()

    def after_generation(
        self,
        started: Started,
        tokens: list[int],
        received: float,
        seq: Callable[[], int],
        task: asyncio.Task[None],
    ) -> None:
        """A cancel that landed before the answer streamed (the task never reached its own
        handler) still owes the client its `done`."""
        if task.cancelled() and self.cancel_requested:
            self.cancel_requested = False
            usage = Usage(len(tokens), 0, 0)
            stats = started.warmer.stats
            sheet = ScoreSheet.at_submit(started.planner, tokens, stats.spans)
            card = sheet.score(usage, None, self.cost, learn=False)
            extra = {"stop_reason": "cancelled"}
            frame = done_frame(seq(), None, usage, "cancelled", "", received, stats, card, extra)
            self.notice = asyncio.ensure_future(self.send(frame))

    async def generate(
        self, started: Started, tokens: list[int], received: float, seq: Callable[[], int]
    ) -> None:
        warmer = started.warmer
        sheet = ScoreSheet.at_submit(started.planner, tokens, warmer.stats.spans)
        warmer.settle(tokens)
        try:
            ticket = self.scheduler.final_started(self.session_id, self.tenant)
        except RateLimited as error:
            warmer.release()
            await self.send(Error.of(error))
            return
        try:
            await self.stream(started, tokens, received, seq, warmer.stats, ticket, sheet)
        finally:
            ticket.close()
            warmer.release()
            warmer.stats = WarmStats()

    async def stream(
        self,
        started: Started,
        tokens: list[int],
        received: float,
        seq: Callable[[], int],
        stats: WarmStats,
        ticket: FinalTicket,
        sheet: ScoreSheet,
    ) -> None:
        ttft_ms: float | None = None
        output: list[str] = []
        usage, reported, stopping = Usage(len(tokens), 0, 0), False, Stopping(started.context)
        request_id = f"final-{self.session_id}-{seq()}-{next(self.numbers)}"
        body, route = self.body(started, tokens), started.warmer.route
        spec = self.speculator.take(body) if self.speculator is not None else None
        try:
            stream = (
                attached_chunks(spec, self.vllm, request_id, route)
                if spec is not None
                else self.vllm.stream_completion(body, request_id, route)
            )
            async with contextlib.aclosing(stream):  # closed early: vLLM aborts the request
                async for chunk in stream:
                    for choice in chunk.get("choices", []):
                        stopping.see(choice)
                        text = choice.get("text") or ""
                        if text and not output:  # the answer's opening was part of the prompt
                            text = started.prompt.frame.answer_opening + text
                        if text := stopping.admit("".join(output), text):
                            ticket.first_token()
                            if ttft_ms is None:
                                ttft_ms = (time.perf_counter() - received) * 1000
                            await self.send(first_or_next(text, ttft_ms, output, sheet))
                            output.append(text)
                    if chunk.get("usage"):
                        usage, reported = Usage.from_body(chunk["usage"]), True
                    if stopping.judged is not None:  # the context's word: the answer is whole
                        break
        except asyncio.CancelledError:
            if not self.cancel_requested:
                raise  # the session is closing: nobody to tell
            stopping.cancelled()
        except UpstreamError as error:
            await self.send(Error.of(error))
            return
        finally:
            self.cancel_requested = False
        started.planner.assume_cached(tokens)  # the final request left its blocks in the cache
        finish, cut = stopping.finish, stopping.judged is not None  # cut: no usage comes
        started.warmer.dispatcher.metrics.final_answered(
            started.strategy.name, ttft_ms, None if cut else usage, finish
        )
        answer = "".join(output)
        extra: dict[str, Any] = {"stop_reason": stopping.reason}
        if started.context is not None and finish != "cancelled":
            extra |= await started.context.after_answer(answer)
        # An attached answer's TTFT is no prefill time: it would teach the cost fit nonsense.
        card = sheet.score(usage, ttft_ms, self.cost, learn=reported and spec is None)
        frame = done_frame(
            seq(), ttft_ms, usage, finish, answer, received, stats, card, extra,
            self.outcome(spec),
        )  # fmt: skip
        await self.send(frame)

    def outcome(self, spec: Speculation | None) -> Outcome:
        return self.speculator.outcome(spec) if self.speculator is not None else Outcome()

    def body(self, started: Started, tokens: list[int]) -> dict[str, Any]:
        chains = {"vllm_xargs": REPORT_FULL_CHAINS} if self.settings.kv_events_url else {}
        chains |= stop_fields(started.context)  # a context's stop sequences (a chat has none)
        return chains | {
            "model": started.facts.model,
            "prompt": tokens,
            "max_tokens": started.params.max_tokens or self.settings.max_tokens,
            "temperature": started.params.temperature,
            "priority": self.settings.final_priority,
            "cache_salt": started.salt,
        }


def first_or_next(text: str, ttft_ms: float, output: list[str], sheet: ScoreSheet) -> Token:
    """The answer's first token carries what is known at that moment; the others only text."""
    if output:
        return Token(text=text)
    return Token.first(text, ttft_ms, len(sheet.tokens), sheet.warmed_tokens)


def done_frame(
    seq: int,
    ttft_ms: float | None,
    usage: Usage,
    finish: str | None,
    text: str,
    received: float,
    stats: WarmStats,
    scorecard: Scorecard,
    extra: dict[str, Any] | None = None,
    speculation: Outcome | None = None,
) -> Done:
    speculation = speculation or Outcome()
    figures = {
        "speculative": speculation.speculative,
        "speculation_wasted_tokens": speculation.wasted_tokens,
    }
    return Done(
        seq=seq,
        ttft_ms=None if ttft_ms is None else round(ttft_ms, 2),
        total_ms=round((time.perf_counter() - received) * 1000, 2),
        prompt_tokens=usage.prompt_tokens,
        cached_tokens=usage.cached_tokens,
        completion_tokens=usage.completion_tokens,
        finish_reason=finish,
        text=text,
        warm_requests=stats.requests,
        warm_prefill_tokens=stats.prefill_tokens,
        warm_pieces=WarmPieces(sent=stats.sent, landed=stats.requests, cancelled=stats.cancelled),
        scorecard=scorecard.model_copy(update=figures),
        **figures,
        **(extra or {}),
    )
