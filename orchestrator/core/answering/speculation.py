"""Answer before Enter: the submit-ready prompt sent as a speculative final, attached at submit.

When the typed text looks finished (it ends a sentence, or the typist paused), the session
warms the submit-ready prompt. With `PREFILL_SPECULATE` on (`on`: always; `idle`: only while
no final request waits for its first token and no warm-up piece queues), it sends that prompt
as the very final request a submit of the text would send instead (same token ids, the
session's generation parameters and salt), at the warm-up priority, streamed into a buffer,
and stopped after `speculate_tokens` generated tokens. It is warm-up-class work: it waits
for the session's own warm-up to land, then takes a piece's place in the warm-up scheduler,
passes the engine watch and the rate gate, and is sent only when the prompt's uncached full
blocks fit in one piece (otherwise the pause warm-up goes first, in pieces).

At most one speculation per session; an input frame that changes the text cancels it at
once. At submit (`take`), if the final request's body equals the speculation's (token ids and
every parameter), the final attaches to it (`attached_chunks`): the buffered tokens go to the
client at once, the speculation streams on to its budget, and the rest of the answer is asked
for at the final priority with the prompt followed by the generated token ids (vLLM returns
them: `return_token_ids`), which hits the cache; text is never tokenized again. Otherwise the
speculation is cancelled and the normal final goes out. The SQL of a text-to-SQL answer runs
only after the submit, as for any final (`answer.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.core.engine.vllm_client import Usage, VLLMClient
from orchestrator.core.planning.planner import usable_blocks
from orchestrator.core.warming.dispatch import WarmDispatcher
from orchestrator.core.warming.scheduler import WarmClass
from orchestrator.core.warming.warmer import Warmer
from orchestrator.errors import ServiceError, UpstreamError, UpstreamUnavailable
from orchestrator.settings import Settings

log = logging.getLogger(__name__)
SpeculateMode = Literal["off", "idle", "on"]


@dataclass
class Speculation:
    """One speculative final: what it asks, and what has come back so far."""

    text: str  # the typed text it speculates on
    final_body: dict[str, Any]  # the final request a submit of `text` would send
    chunks: list[dict[str, Any]] = field(default_factory=list)  # text and finish, as streamed
    token_ids: list[int] = field(default_factory=list)  # the generated ids, in order
    finish: str | None = None
    usage: Usage | None = None
    sent: bool = False  # handed to vLLM
    ended: bool = False  # its stream is over (budget, stop, error or cancel)
    exact: bool = True  # every streamed text came with its token ids
    attached: bool = False
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def generated(self) -> int:
        return len(self.token_ids)

    def body(self, budget: int, priority: int) -> dict[str, Any]:
        """The speculative request: the final's, stopped at `budget` tokens, at `priority`,
        with the generated token ids in each chunk."""
        max_tokens = min(budget, int(self.final_body["max_tokens"]))
        return self.final_body | {
            "max_tokens": max_tokens,
            "priority": priority,
            "return_token_ids": True,
        }

    def add(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices", []):
            text, ids = choice.get("text") or "", choice.get("token_ids")
            finish = choice.get("finish_reason")
            if ids is None and text:
                self.exact = False
            self.token_ids.extend(int(i) for i in ids or ())
            self.finish = finish or self.finish
            if text or finish:
                self.chunks.append({"choices": [{"text": text, "finish_reason": finish}]})
        if chunk.get("usage"):
            self.usage = Usage.from_body(chunk["usage"])
        self.changed.set()

    def end(self) -> None:
        self.ended = True
        self.changed.set()

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def replay(self) -> AsyncIterator[dict[str, Any]]:
        """The chunks streamed so far, then the rest as they come, until it ends."""
        index = 0
        while True:
            while index < len(self.chunks):
                yield self.chunks[index]
                index += 1
            if self.ended:
                return
            self.changed.clear()
            await self.changed.wait()


@dataclass(frozen=True)
class Outcome:
    """What speculation did for one question (the `done` frame's fields)."""

    speculative: bool = False  # the answer attached to a speculation
    wasted_tokens: int = 0  # generated tokens of speculations thrown away


class Speculator:
    """A session's speculative finals: at most one at a time."""

    def __init__(
        self,
        vllm: VLLMClient,
        dispatcher: WarmDispatcher,
        settings: Settings,
        session_id: str,
        tenant: str,
    ) -> None:
        self.vllm = vllm
        self.dispatcher = dispatcher
        self.settings = settings
        self.session_id = session_id
        self.tenant = tenant
        self.current: Speculation | None = None
        self.wasted_tokens = 0  # of the question being typed
        self.numbers = 0
        self.broken = False  # vLLM did not return token ids: never speculate again
        self.allowed = True  # the session's start frame did not opt out
        self.task: asyncio.Task[None] | None = None  # the latest speculation's

    @property
    def mode(self) -> SpeculateMode:
        return self.settings.speculate if self.allowed and not self.broken else "off"

    def idle_enough(self) -> bool:
        """Mode `idle`: no final request waits for its first token, no piece queues."""
        scheduler = self.dispatcher.scheduler
        return self.mode == "on" or (not scheduler.waiting_finals and not scheduler.queued())

    def begin(
        self,
        warmer: Warmer,
        text: str,
        final_body: dict[str, Any],
        route: str | None,
        fallback: Callable[[], None] = lambda: None,
    ) -> bool:
        """The submit-ready moment of `text`: speculate on the final `final_body`, unless off
        or busy. True when the speculation stands for the pause warm-up too (what is not
        cached fits in one piece; `fallback` sends the pause warm-up if the speculation
        is not sent after all); otherwise the pause warm-up goes first, and the speculation
        after it has landed."""
        if self.mode == "off":
            return False
        current = self.current
        if current is not None and current.final_body == final_body:
            return True
        self.cancel()
        if not self.idle_enough():
            self.dispatcher.metrics.speculation("refused")
            return False
        spec = Speculation(text, final_body)
        self.current = spec
        covers = self.fits_one_piece(warmer, final_body["prompt"])
        spec.task = self.task = asyncio.create_task(
            self.run(spec, warmer, route, fallback if covers else lambda: None)
        )
        return covers

    def fits_one_piece(self, warmer: Warmer, tokens: list[int]) -> bool:
        """The full blocks of `tokens` not cached fit in one warm-up piece."""
        block = warmer.planner.block_size
        missing = usable_blocks(len(tokens), block) - warmer.cached_blocks(tokens)
        return missing * block <= self.dispatcher.piece_tokens

    def on_text(self, text: str) -> None:
        """An input frame: a text other than the speculation's cancels it."""
        if self.current is not None and self.current.text != text:
            self.cancel()

    def cancel(self) -> None:
        """Throw the current speculation away (its generated tokens count as wasted)."""
        spec, self.current = self.current, None
        if spec is None:
            return
        spec.stop()
        self.wasted_tokens += spec.generated
        metrics = self.dispatcher.metrics
        metrics.speculation("wasted" if spec.sent else "dropped", spec.generated)

    def take(self, final_body: dict[str, Any]) -> Speculation | None:
        """At submit: the speculation to attach to, if it asked exactly `final_body` and can
        go on; otherwise it is cancelled (None: send the normal final)."""
        spec = self.current
        if spec is None:
            return None
        usable = spec.sent and spec.exact and not (spec.ended and not spec.chunks)
        if spec.final_body != final_body or not usable:
            self.cancel()
            return None
        self.current = None
        spec.attached = True
        self.dispatcher.metrics.speculation("attached")
        return spec

    def outcome(self, spec: Speculation | None) -> Outcome:
        """The question's figures, once its final is answered; the next question starts."""
        wasted, self.wasted_tokens = self.wasted_tokens, 0
        return Outcome(speculative=spec is not None, wasted_tokens=wasted)

    async def run(
        self, spec: Speculation, warmer: Warmer, route: str | None, fallback: Callable[[], None]
    ) -> None:
        try:
            await warmer.idle()  # its own warm-up first: the two would compute the same blocks
            if not self.fits_one_piece(warmer, spec.final_body["prompt"]) or not (
                self.idle_enough() and self.dispatcher.try_admit()
            ):
                self.give_up(spec, fallback)
                return
            await self.send(spec, route, fallback)
        finally:
            spec.end()

    def give_up(self, spec: Speculation, fallback: Callable[[], None]) -> None:
        """Not sent after all (busy, or too much to compute): the pause warm-up goes instead."""
        if self.current is spec:
            self.current = None
            self.dispatcher.metrics.speculation("refused")
            fallback()

    async def send(
        self, spec: Speculation, route: str | None, fallback: Callable[[], None]
    ) -> None:
        """Stream `spec` into its buffer in a warm-up piece's place (admitted already)."""
        dispatcher, verdict = self.dispatcher, None
        scheduler = dispatcher.scheduler
        self.numbers += 1
        request_id = f"speculate-{self.session_id}-{self.numbers}"
        body = spec.body(self.settings.speculate_tokens, self.settings.warm_priority)
        try:
            async with scheduler.piece(self.session_id, self.tenant, WarmClass.INTERACTIVE):
                if self.mode == "idle" and scheduler.waiting_finals:
                    self.give_up(spec, fallback)
                    return
                await dispatcher.gate.acquire()
                spec.sent = True
                dispatcher.metrics.speculation("sent")
                async for chunk in self.vllm.stream_completion(body, request_id, route):
                    spec.add(chunk)
            verdict = True
            if not spec.exact:
                self.broken = True
                log.warning("vLLM returned no token ids: speculation is off for this session")
        except ServiceError as error:
            verdict = False if isinstance(error, UpstreamUnavailable) else None
            log.warning("speculation failed: %s", error.message)
        finally:
            dispatcher.finish(verdict)


async def attached_chunks(
    spec: Speculation,
    vllm: VLLMClient,
    request_id: str,
    route: str | None,
) -> AsyncGenerator[dict[str, Any]]:
    """The final's chunks from an attached speculation: what it streamed, then the rest of
    the answer at the final priority, the prompt followed by the generated ids; last, one
    usage chunk for the whole answer."""
    try:
        async for chunk in spec.replay():
            yield chunk
    finally:
        spec.stop()  # the client cancelled: the speculation goes too
    final = spec.final_body
    left = int(final["max_tokens"]) - spec.generated
    rest: Usage | None = None
    if spec.finish != "stop" and left > 0:
        if not spec.exact:
            raise UpstreamError("vLLM returned no token ids for the speculation's answer")
        body = final | {"prompt": [*final["prompt"], *spec.token_ids], "max_tokens": left}
        async for chunk in vllm.stream_completion(body, request_id, route):
            if chunk.get("usage"):
                rest = Usage.from_body(chunk["usage"])
            if chunk.get("choices"):
                yield chunk
    yield {"choices": [], "usage": whole_usage(spec, rest)}


def whole_usage(spec: Speculation, rest: Usage | None) -> dict[str, Any]:
    """The usage of an attached answer: the final prompt, what the speculation found cached,
    and the tokens generated by both requests."""
    prompt = len(spec.final_body["prompt"])
    first = spec.usage or rest
    cached = min(prompt, first.cached_tokens) if first is not None else 0
    completion = spec.generated + (rest.completion_tokens if rest is not None else 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
