"""One typing session: keystrokes in, warm-ups out, then the streamed answer.

The route (`web/ws.py`) parses frames and calls `start`, `on_input`, `submit`, `cancel` and
`close`. `start` fixes what the session is about (`Started`: prompt, planner, warmer, warm
strategy); each keystroke then becomes a planner decision (`planner.py`) that the warmer sends
(`warmer.py`). A final answer, a `submit` or a chat completion over HTTP with `X-Session-Id`,
is opened by `final` (`async with session.final(...) as answer`: `answering/answer.py`); a
`submit` streams it to the WebSocket's formatter in a task that `cancel` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

from orchestrator.core import frames
from orchestrator.core.answering.answer import Answer, Responder
from orchestrator.core.answering.final_request import FinalRequest
from orchestrator.core.answering.session_final import (
    SessionFinal,
    final_body,
    submitted_text,
    without_streaming,
)
from orchestrator.core.answering.speculation import Speculator
from orchestrator.core.cache.resident import Eviction, ResidentBlocks
from orchestrator.core.engine.salt import routing_key, tenant_salt
from orchestrator.core.engine.vllm_client import EngineFacts
from orchestrator.core.planning.planner import WarmPlanner, WarmUp
from orchestrator.core.planning.prompt import SessionPrompt
from orchestrator.core.planning.rhythm import TypingRhythm
from orchestrator.core.popularity.popularity import PopularityKind
from orchestrator.core.services import SessionServices
from orchestrator.core.started import Started
from orchestrator.core.warming.modes import STRATEGIES
from orchestrator.core.warming.scorecard import ScoreSheet
from orchestrator.core.warming.warmer import Warmer
from orchestrator.errors import InvalidRequest, ServiceError


class Session:
    def __init__(self, services: SessionServices, send: frames.Send, tenant: str) -> None:
        self.services = services
        self.send = send
        self.tenant = tenant
        self.id = secrets.token_hex(8)
        self.settings = services.settings
        self.started: Started | None = None
        self.text, self.seq = "", 0
        self.planned_stable: str | None = None  # the stable text last handed to the planner
        self.warm_memo: tuple[str, tuple[int, ...]] | None = None  # stable text -> its warm-up
        self.pause_timer: asyncio.TimerHandle | None = None
        self.rhythm = TypingRhythm(
            services.settings.typing_pause_ms / 1000, services.settings.typing_pause_factor
        )
        self.rewarms_left = services.settings.rewarms_per_pause
        self.last_input = 0.0  # loop time of the last start or keystroke
        self.speculator = Speculator(
            services.vllm, services.dispatcher, services.settings, self.id, tenant
        )
        self.answer: Answer | None = None  # the final answer in flight, if any
        self.answer_task: asyncio.Task[None] | None = None  # a `submit`'s
        self.numbers = itertools.count()  # request ids: final-<session>-<seq>-<n>

    @property
    def salt(self) -> str:
        return self.started.salt if self.started else ""

    # -- client frames -------------------------------------------------------------------

    async def start(self, frame: frames.Start) -> None:
        renderer = self.services.renderer
        if renderer is None:
            raise InvalidRequest("this server has no tokenizer loaded", code="not_configured")
        system, openings, context = frame.context.system, ("", ""), None
        if frame.context.database is not None:
            context = self.services.contexts.get(frame.context.database)
            system, openings = context.system_prompt, context.openings
        self.cancel_all()
        facts = await self.services.engine_facts()
        history = [turn.model_dump() for turn in frame.context.history]
        prompt = renderer.session_prompt(system, history, openings)
        self.check_length(len(prompt.head_tokens), facts, frame.params)  # context too long
        planner = WarmPlanner(facts.block_size)
        salt = tenant_salt(self.settings.server_secret, self.tenant, frame.cache_namespace)
        warmer = Warmer(
            self.services.dispatcher,
            self.send,
            self.id,
            facts.model,
            salt,
            planner,
            self.replan,
            functools.partial(self.resident_tokens, salt, facts.block_size),
            route=routing_key(self.settings.server_secret, self.tenant, self.id),
            on_landed=functools.partial(self.record_prefix, "warm"),
            tenant=self.tenant,
        )
        strategy = STRATEGIES[frame.warmups]
        messages = ((("system", frame.context.system),) if frame.context.system else ()) + tuple(
            (turn["role"], turn["content"]) for turn in history
        )
        self.started = Started(
            facts,
            prompt,
            planner,
            warmer,
            strategy,
            frame.params,
            salt,
            context,
            messages,
            frame.cache_namespace,
            frame.context.database,
        )
        self.text, self.seq, self.planned_stable, self.warm_memo = "", 0, None, None
        self.speculator.allowed = frame.speculate and strategy.follows_typing
        self.typed()
        ready = frames.Ready(
            session_id=self.id,
            model=facts.model,
            block_size=facts.block_size,
            warmups=strategy.name,
        )
        await self.send(ready)
        warmer.offer(self.replan())  # the context itself, before the first keystroke

    def on_input(self, frame: frames.Input) -> None:
        started = self.require_started()
        self.text, self.seq = frame.text, frame.seq
        self.speculator.on_text(frame.text)
        self.typed()
        if not started.strategy.follows_typing:
            return
        stable = started.prompt.stable_text(frame.text)
        if stable != self.planned_stable:  # most keystrokes only change the word being typed
            self.planned_stable = stable
            tokens = self.warm_tokens(started.prompt, frame.text)
            self.check_length(len(tokens))
            started.warmer.offer(started.planner.on_input(tokens, frame.seq))
        if ends_a_sentence(frame.text):
            self.on_pause()  # where users press Enter: warm the submit-ready prompt now
        else:
            self.restart_pause_timer()

    async def submit(self, frame: frames.Submit, received: float, out: Responder) -> None:
        """A `submit`: its answer streams to `out` (the WebSocket's formatter) in a task."""
        self.seq = frame.seq
        request_id = f"final-{self.id}-{frame.seq}-{next(self.numbers)}"
        answer = self.prepare(frame.text, request_id, received, {})
        self.answer_task = asyncio.create_task(self.answer_to(answer, out))
        self.answer_task.add_done_callback(lambda _: self.end_answer(answer))

    async def answer_to(self, answer: Answer, out: Responder) -> None:
        try:
            async with self.opened(answer):
                await answer.deliver(out)
        except ServiceError as error:  # refused before it streamed (vLLM's error, a limit)
            await out.failed(error)

    @contextlib.asynccontextmanager
    async def final(
        self, text: str, request_id: str, received: float, fields: dict[str, Any], mode: str = ""
    ) -> AsyncIterator[Answer]:
        """The final answer of `text` (`fields` change the final's body): sent, or attached
        to the speculation that asked the same; leaving the block closes it. One at a time."""
        async with self.opened(self.prepare(text, request_id, received, fields, mode)) as answer:
            yield answer

    def chat_final(
        self,
        messages: list[dict[str, Any]],
        request_id: str,
        received: float,
        fields: dict[str, Any],
    ) -> contextlib.AbstractAsyncContextManager[Answer]:
        """A chat completion over HTTP for this session (`X-Session-Id`): `messages` is the
        user's message, after the session's context messages or alone; `fields` the
        client's, over the session's body."""
        text = submitted_text(messages, self.require_started().messages)
        return self.final(text, request_id, received, fields, mode="http")

    @contextlib.asynccontextmanager
    async def opened(self, answer: Answer) -> AsyncIterator[Answer]:
        try:
            await answer.open()
            yield answer
        finally:
            try:
                await answer.close()
            finally:
                self.end_answer(answer)

    def prepare(
        self, text: str, request_id: str, received: float, fields: dict[str, Any], mode: str = ""
    ) -> Answer:
        """The answer of `text`, not yet sent: the submit-ready prompt, the warm-ups settled,
        the speculation that asked the same taken."""
        started = self.require_started()
        if self.answer is not None:
            raise InvalidRequest("a generation is already running; cancel it first", code="busy")
        self.cancel_pause_timer()
        self.text, self.planned_stable = text, None
        tokens = started.prompt.final_tokens(text)
        self.check_length(len(tokens))
        self.record_prefix("final", tokens)
        sheet = ScoreSheet.at_submit(started.planner, tokens, started.warmer.stats.spans)
        stats = started.warmer.stats
        started.warmer.settle(tokens)
        streaming = {"stream": True, "stream_options": {"include_usage": True}}
        body = final_body(started, tokens, self.settings) | fields | streaming
        speculation = self.speculator.take(without_streaming(body))
        request = FinalRequest(
            body, self.tenant, started.warmer.route, request_id, mode or started.strategy.name,
            session_id=self.id, received=received,
        )  # fmt: skip
        outcome = self.speculator.outcome(speculation)
        final = SessionFinal(request, started, sheet, stats, speculation, outcome)
        self.answer = Answer(final, self.services.finals, self.services.prefill_cost)
        return self.answer

    def end_answer(self, answer: Answer) -> None:
        """The answer is over for the session (once; later calls do nothing)."""
        answer.final.close(answer.answered)
        if self.answer is answer:
            self.answer = None

    def cancel(self) -> None:
        """The client's cancel: the answer of a `submit` ends with finish_reason cancelled."""
        answer, task = self.answer, self.answer_task
        if answer is None or task is None or task.done():
            return
        answer.cancel_requested = True
        if answer.begun:  # otherwise it sees the cancel before it sends anything
            task.cancel()

    def cancel_all(self) -> None:
        """Stop everything in flight: the pause timer, the warm-ups, the generation."""
        self.cancel_pause_timer()
        self.speculator.cancel()
        if self.started is not None:
            self.started.warmer.cancel()
        if self.answer_task is not None:
            self.answer_task.cancel()

    async def close(self) -> None:
        self.cancel_all()
        tasks = [
            self.answer_task,
            self.started.warmer.task if self.started else None,
            self.speculator.task,
        ]
        await asyncio.gather(*(task for task in tasks if task is not None), return_exceptions=True)

    # -- warm-ups ------------------------------------------------------------------------

    def require_started(self) -> Started:
        if self.started is None:
            raise InvalidRequest("send a start frame first", code="not_started")
        return self.started

    def check_length(
        self,
        prompt_tokens: int,
        facts: EngineFacts | None = None,
        params: frames.GenerationParams | None = None,
    ) -> None:
        """InvalidRequest when the prompt and the answer would not fit in the model's context
        (`facts` and `params` default to the started session's)."""
        facts = facts or (self.started.facts if self.started else None)
        params = params or (self.started.params if self.started else frames.GenerationParams())
        limit = facts.max_model_len if facts else None
        max_tokens = params.max_tokens or self.settings.max_tokens
        if limit is not None and prompt_tokens + max_tokens > limit:
            raise InvalidRequest(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds "
                f"the model's context of {limit} tokens",
                code="input_too_long",
            )

    def resident_tokens(self, salt: str, block_size: int, tokens: Sequence[int]) -> int | None:
        """Tokens of `tokens` vLLM holds under `salt`, by its KV events (None: no events)."""
        feed = self.services.kv_feed
        if feed is None or not feed.live:
            return None
        return feed.index.resident_tokens(salt, tokens, block_size)

    def record_prefix(self, kind: PopularityKind, tokens: Sequence[int]) -> None:
        """Into prefix popularity (`core/popularity/`): this session's final or landed warm-up."""
        if (started := self.started) is not None:
            self.services.record_prefix(
                self.tenant,
                started.namespace,
                tokens,
                started.facts.block_size,
                kind,
                started.label,
            )

    def typed(self) -> None:
        self.last_input = asyncio.get_running_loop().time()
        self.rewarms_left = self.settings.rewarms_per_pause

    def on_evicted(self, eviction: Eviction, index: ResidentBlocks) -> bool:
        """vLLM evicted blocks (its KV events): if they cut this session's warmed chain,
        believe only what is left, and warm it again while the user is still around (a few
        times between keystrokes: under pressure re-warms evict others in turn). True if a
        re-warm was sent."""
        started = self.started
        if started is None or not started.strategy.warms:
            return False
        planner = started.planner
        cut = index.cut_at(started.salt, planner.confirmed, planner.block_size, eviction)
        if cut is None or not planner.evicted(cut):
            return False
        idle_s = asyncio.get_running_loop().time() - self.last_input
        if self.rewarms_left <= 0 or idle_s > self.settings.rewarm_idle_s:
            return False
        if not started.warmer.rewarm():
            return False
        self.rewarms_left -= 1
        return True

    def resume_warmups(self) -> None:
        if self.started is not None and self.started.strategy.warms:
            self.started.warmer.resume()

    def replan(self) -> WarmUp | None:
        """The planner's candidate for the current text (a warm-up retried after a pause)."""
        started = self.started
        text = started.strategy.warm_text(self.text) if started else None
        if started is None or text is None:
            return None
        return started.planner.on_input(self.warm_tokens(started.prompt, text), self.seq)

    def warm_tokens(self, prompt: SessionPrompt, text: str) -> tuple[int, ...]:
        """The warm-up ids of `text`'s stable part, kept for that part: retries ask again."""
        stable = prompt.stable_text(text)
        if self.warm_memo is None or self.warm_memo[0] != stable:
            self.warm_memo = (stable, tuple(prompt.warm_tokens(text)))
        return self.warm_memo[1]

    def restart_pause_timer(self) -> None:
        self.cancel_pause_timer()
        loop = asyncio.get_running_loop()
        self.rhythm.keystroke(loop.time())
        self.pause_timer = loop.call_later(self.rhythm.pause_s(), self.on_pause)

    def cancel_pause_timer(self) -> None:
        if self.pause_timer is not None:
            self.pause_timer.cancel()
            self.pause_timer = None

    def on_pause(self) -> None:
        self.cancel_pause_timer()
        with contextlib.suppress(InvalidRequest):  # not started, or too long: submit says so
            started = self.require_started()
            tokens = started.prompt.final_tokens(self.text)
            self.check_length(len(tokens))
            body = final_body(started, tokens, self.settings)
            warm = functools.partial(self.warm_submit_ready, started, tokens, self.seq)
            if not self.speculator.begin(
                started.warmer, self.text, body, started.warmer.route, warm
            ):
                warm()

    def warm_submit_ready(self, started: Started, tokens: list[int], seq: int) -> None:
        started.warmer.offer(started.planner.on_pause(tokens, seq))


SENTENCE_ENDS = frozenset(".?!")


def ends_a_sentence(text: str) -> bool:
    """The text ends with a full stop, a question or an exclamation mark: the likeliest
    moment for Enter, with no typing pause to warm the submit-ready prompt before it."""
    return bool(text) and text[-1] in SENTENCE_ENDS
