"""A session's final request on the WebSocket: the answer streamed back as `token` frames,
then one `done` frame (with the SQL fields when the session's context adds them).

The request itself is the session's (`Session.open_final`: its warm-ups settled, a
speculation attached when it asked the same) and goes the one way every final goes
(`final_request.Finals`); this module adds only the frames, the context's word on where the
answer stops (`stopping.py`), and what the context does with a whole answer.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any

from orchestrator.core.answering.final_request import FinalReply, Finals
from orchestrator.core.answering.session_final import SessionFinal
from orchestrator.core.answering.stopping import Stopping
from orchestrator.core.engine.prefill_cost import PrefillCost
from orchestrator.core.engine.vllm_client import Usage
from orchestrator.core.frames import Done, Error, Scorecard, Send, Token, WarmPieces
from orchestrator.errors import ServiceError

CloseFinal = Callable[[SessionFinal, bool], None]  # (the final, whether it was answered)


class FinalAnswer:
    """At most one answer of a session at a time; cancellable by the client."""

    def __init__(self, finals: Finals, send: Send, cost: PrefillCost, close: CloseFinal) -> None:
        self.finals = finals
        self.send = send
        self.cost = cost  # the application's shared prefill-cost fit
        self.close = close  # the session's: its warm-ups go on, the question's figures end
        self.task: asyncio.Task[None] | None = None
        self.cancel_requested = False
        self.notice: asyncio.Future[None] | None = None  # a `done` sent for an early cancel

    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def begin(self, final: SessionFinal, seq: Callable[[], int]) -> None:
        """Send `final`; `seq` is the session's latest input seq."""
        self.task = asyncio.create_task(self.generate(final, seq))
        self.task.add_done_callback(functools.partial(self.after_generation, final, seq))

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
        self, final: SessionFinal, seq: Callable[[], int], task: asyncio.Task[None]
    ) -> None:
        """The final is over for the session; a cancel that landed before the answer
        streamed (the task never reached its own handler) still owes the client its `done`."""
        self.close(final, False)  # a no-op when the answer closed it already
        if task.cancelled() and self.cancel_requested:
            self.cancel_requested = False
            card = final.scorecard(None, self.cost)
            usage = Usage(len(final.tokens), 0, 0)
            extra = {"stop_reason": "cancelled"}
            frame = done_frame(final, seq(), None, usage, "cancelled", "", card, extra)
            self.notice = asyncio.ensure_future(self.send(frame))

    async def generate(self, final: SessionFinal, seq: Callable[[], int]) -> None:
        try:
            reply = await self.finals.open(final.request, final.speculation)
        except ServiceError as error:
            await self.send(Error.of(error))
            return
        async with reply:
            await self.stream(final, reply, seq)

    async def stream(self, final: SessionFinal, reply: FinalReply, seq: Callable[[], int]) -> None:
        started = final.started
        output: list[str] = []
        stopping = Stopping(started.context)
        try:
            async for chunk in reply.chunks():
                for choice in chunk.get("choices", []):
                    stopping.see(choice)
                    text = choice.get("text") or ""
                    if text and not output:  # the answer's opening was part of the prompt
                        text = started.prompt.frame.answer_opening + text
                    if text := stopping.admit("".join(output), text):
                        await self.send(next_token(text, reply, output, final))
                        output.append(text)
                if stopping.judged is not None:  # the context's word: the answer is whole
                    break
        except asyncio.CancelledError:
            if not self.cancel_requested:
                raise  # the session is closing: nobody to tell
            stopping.cancelled()
        except ServiceError as error:
            await self.send(Error.of(error))
            return
        finally:
            self.cancel_requested = False
        reply.finish = stopping.finish
        await self.finish(final, reply, "".join(output), stopping, seq)

    async def finish(
        self,
        final: SessionFinal,
        reply: FinalReply,
        answer: str,
        stopping: Stopping,
        seq: Callable[[], int],
    ) -> None:
        """The answer is whole (or cancelled): the `done` frame, after the context's part."""
        self.close(final, True)  # its blocks are in the cache now
        context = final.started.context
        extra: dict[str, Any] = {"stop_reason": stopping.reason}
        if context is not None and stopping.finish != "cancelled":
            extra |= await context.after_answer(answer)
        usage = reply.usage or Usage(len(final.tokens), 0, 0)
        card = final.scorecard(reply, self.cost)
        frame = done_frame(final, seq(), reply.ttft_ms, usage, stopping.finish, answer, card, extra)
        await self.send(frame)


def next_token(text: str, reply: FinalReply, output: list[str], final: SessionFinal) -> Token:
    """The answer's first token carries what is known at that moment; the others only text."""
    if output:
        return Token(text=text)
    ttft_ms = reply.ttft_ms if reply.ttft_ms is not None else 0.0
    return Token.first(text, ttft_ms, len(final.sheet.tokens), final.sheet.warmed_tokens)


def done_frame(
    final: SessionFinal,
    seq: int,
    ttft_ms: float | None,
    usage: Usage,
    finish: str | None,
    text: str,
    scorecard: Scorecard,
    extra: dict[str, Any] | None = None,
) -> Done:
    stats = final.stats
    received = final.request.received
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
        scorecard=scorecard,
        speculative=final.outcome.speculative,
        speculation_wasted_tokens=final.outcome.wasted_tokens,
        **(extra or {}),
    )
