"""A session's final answer, whatever channel asked for it: the one owner of an answer.

`Session.final` opens it (`async with session.final(...) as answer`): the final request goes
the one way every final goes (`final_request.Finals`), attached to the session's speculation
when that asked the same. `Answer.pieces()` is the answer's text as it streams, the answer's
opening put back in front and the context's stop rule applied (`stopping.py`: the text ends
where the context judges the answer whole, and the stream is left there); `Answer.end()`
gives its facts (`Ended`: what the `done` frame and an HTTP answer's usage carry), after the
context's step for a whole answer (text-to-SQL: the query runs). Leaving the `async with`
closes the reply (vLLM aborts what is unfinished) and the session's final.

An answer is `answered` when vLLM computed its prompt (its first token came, or its usage):
then its blocks are cached, and the session's planner believes so.

The channels only format: the WebSocket's formatter (`web/ws.py`) is a `Responder` that
`deliver` drives (a client's `cancel` ends the answer as `cancelled`); the HTTP handler
(`web/session_chat.py`) reads `pieces()` and `end()` itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.core.answering.final_request import FinalReply, Finals
from orchestrator.core.answering.session_final import SessionFinal
from orchestrator.core.answering.stopping import Stopping
from orchestrator.core.engine.prefill_cost import PrefillCost
from orchestrator.core.engine.vllm_client import Usage
from orchestrator.core.frames import Scorecard, WarmPieces
from orchestrator.errors import ServiceError


@dataclass(frozen=True)
class Ended:
    """A whole (or cancelled) answer: the `done` frame's facts, an HTTP answer's usage."""

    text: str
    ttft_ms: float | None  # the request's arrival -> its first token
    total_ms: float  # the request's arrival -> the answer's end (the context's step included)
    usage: Usage  # vLLM's (the prompt alone, nothing cached, when vLLM never answered)
    finish_reason: str | None  # vLLM's, "stop" when the context ended it, or "cancelled"
    stop_reason: str | None  # why it stopped (`stopping.py`)
    scorecard: Scorecard
    warm_pieces: WarmPieces
    context_fields: dict[str, Any]  # the context's fields for a whole answer (the SQL, rows)


class Responder(Protocol):
    """A channel's formatter of an answer (the WebSocket's frames)."""

    async def piece(self, answer: Answer, text: str) -> None: ...

    async def ended(self, answer: Answer, ended: Ended) -> None: ...

    async def failed(self, error: ServiceError) -> None: ...


class Answer:
    """One final answer of a session, from `Session.final`'s entry to its exit."""

    def __init__(self, final: SessionFinal, finals: Finals, cost: PrefillCost) -> None:
        self.final = final
        self.finals = finals
        self.cost = cost  # the application's shared prefill-cost fit
        self.reply: FinalReply | None = None  # None until opened (or cancelled before)
        self.stopping = Stopping(final.started.context)
        self.output: list[str] = []
        self.cancel_requested = False  # the client's cancel (not the session closing)
        self.begun = False  # `open` was called

    @property
    def text(self) -> str:
        return "".join(self.output)

    @property
    def ttft_ms(self) -> float | None:
        return self.reply.ttft_ms if self.reply is not None else None

    @property
    def answered(self) -> bool:
        """vLLM computed the prompt (its first token came, or its usage): the one meaning."""
        reply = self.reply
        return reply is not None and (reply.ttft_ms is not None or reply.usage is not None)

    async def open(self) -> None:
        """Send the final (or attach to its speculation); a client's cancel that came first,
        or comes meanwhile, leaves it unopened and cancelled."""
        self.begun = True
        try:
            if not self.cancel_requested:
                self.reply = await self.finals.open(self.final.request, self.final.speculation)
                return
        except asyncio.CancelledError:
            if not self.cancel_requested:
                raise
        self.stopping.cancelled()

    async def close(self) -> None:
        """Close the reply: vLLM aborts what is unfinished; the final is counted."""
        if self.reply is not None:
            await self.reply.aclose()

    async def pieces(self) -> AsyncIterator[str]:
        """The answer's text as it streams, up to where the context's stop rule ends it; a
        failure raises a ServiceError."""
        if self.reply is None:
            return
        opening = self.final.started.prompt.frame.answer_opening
        async for chunk in self.reply.chunks():
            for choice in chunk.get("choices") or ():
                self.stopping.see(choice)
                text = choice.get("text") or ""
                if text and not self.output:  # the answer's opening was part of the prompt
                    text = opening + text
                if text := self.stopping.admit(self.text, text):
                    self.output.append(text)
                    yield text
            if self.stopping.judged is not None:  # the context's word: the answer is whole
                return

    async def deliver(self, out: Responder) -> None:
        """Stream the answer to `out`, then its end; a client's cancel (while reading or
        sending) ends it as cancelled, a failure goes to `out.failed`."""
        try:
            async for text in self.pieces():
                await out.piece(self, text)
        except asyncio.CancelledError:
            if not self.cancel_requested:
                raise  # the session is closing: nobody to tell
            self.stopping.cancelled()
        except ServiceError as error:
            await out.failed(error)
            return
        await out.ended(self, await self.end())

    async def end(self) -> Ended:
        """The answer's facts; for a whole answer (not cancelled), after the context's step.
        The final is released first: the session's warm-ups go on meanwhile."""
        self.final.close(self.answered)
        reply, stopping, final = self.reply, self.stopping, self.final
        if reply is not None:
            reply.finish = stopping.finish
        context = final.started.context
        fields: dict[str, Any] = {}
        if context is not None and stopping.finish != "cancelled":
            fields = await context.after_answer(self.text)
        usage = reply.usage if reply is not None else None
        stats = final.stats
        pieces = WarmPieces(sent=stats.sent, landed=stats.requests, cancelled=stats.cancelled)
        return Ended(
            text=self.text,
            ttft_ms=None if self.ttft_ms is None else round(self.ttft_ms, 2),
            total_ms=round((time.perf_counter() - final.request.received) * 1000, 2),
            usage=usage or Usage(len(final.tokens), 0, 0),
            finish_reason=stopping.finish,
            stop_reason=stopping.reason,
            scorecard=final.scorecard(reply, self.cost),
            warm_pieces=pieces,
            context_fields=fields,
        )
