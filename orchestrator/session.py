"""One typing session: keystrokes in, warm-ups out, then the streamed answer.

The route (`ws.py`) parses frames and calls `start`, `on_input`, `submit`, `cancel` and
`close`; this class turns them into planner decisions (`planner.py`) and vLLM requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import secrets
import time
from typing import Any

from orchestrator import protocol
from orchestrator.errors import InvalidRequest, UpstreamError
from orchestrator.planner import WarmPlanner, WarmUp, stable_prefix
from orchestrator.prompt import SessionPrompt
from orchestrator.salt import tenant_salt
from orchestrator.services import Services
from orchestrator.text_to_sql.contexts import SqlContext, answer_query
from orchestrator.vllm_client import EngineFacts, Usage
from orchestrator.warmer import Send, Warmer, WarmStats


class Session:
    def __init__(self, services: Services, send: Send, tenant: str) -> None:
        self.services = services
        self.send = send
        self.tenant = tenant
        self.id = secrets.token_hex(8)
        self.settings = services.settings
        self.facts: EngineFacts | None = None
        self.prompt: SessionPrompt | None = None
        self.planner: WarmPlanner | None = None
        self.salt = ""
        self.params = protocol.GenerationParams()
        self.warmups: protocol.WarmupMode = "keystroke"
        self.sql_context: SqlContext | None = None
        self.text = ""
        self.seq = 0
        self.planned_stable: str | None = None  # the stable text last handed to the planner
        self.warm_memo: tuple[str, tuple[int, ...]] | None = None  # stable text -> its warm-up
        self.warmer: Warmer | None = None
        self.pause_timer: asyncio.TimerHandle | None = None
        self.generation: asyncio.Task[None] | None = None
        self.cancel_requested = False
        self.notice: asyncio.Future[None] | None = None  # a `done` sent for an early cancel
        self.request_numbers = itertools.count()  # request ids: final-<session>-<seq>-<n>

    # -- client frames -------------------------------------------------------------------

    async def start(self, frame: protocol.Start) -> None:
        renderer = self.services.renderer
        if renderer is None:
            raise InvalidRequest("this server has no tokenizer loaded", code="not_configured")
        system, openings = frame.context.system, ("", "")
        self.sql_context = None
        if frame.context.database is not None:
            self.sql_context = self.services.sql.get(frame.context.database)
            system, openings = self.sql_context.system_prompt, self.sql_context.openings
        self.cancel_all()
        self.facts = await self.services.engine_facts()
        history = [turn.model_dump() for turn in frame.context.history]
        prompt = renderer.session_prompt(system, history, openings)
        self.params = frame.params
        self.check_length(len(prompt.head_tokens))  # a context too long for the model
        self.prompt, self.warm_memo = prompt, None
        self.planner = WarmPlanner(self.facts.block_size)
        self.salt = tenant_salt(self.settings.server_secret, self.tenant, frame.cache_namespace)
        self.warmer = Warmer(
            self.services, self.send, self.id, self.facts, self.salt, self.planner, self.replan
        )
        self.warmups = frame.warmups
        self.text, self.seq, self.planned_stable = "", 0, None
        await self.send(
            protocol.ready(self.id, self.facts.model, self.facts.block_size, self.warmups)
        )
        self.warmer.offer(self.replan())  # the context itself, before the first keystroke

    def on_input(self, frame: protocol.Input) -> None:
        prompt, planner, warmer = self.require_started()
        self.text, self.seq = frame.text, frame.seq
        if self.warmups != "keystroke":
            return
        self.restart_pause_timer()
        stable = stable_prefix(frame.text)
        if stable == self.planned_stable:
            return  # most keystrokes only change the word being typed: nothing new to warm
        self.planned_stable = stable
        tokens = self.warm_tokens(prompt, stable)
        self.check_length(len(tokens))
        warmer.offer(planner.on_input(tokens, frame.seq))

    async def submit(self, frame: protocol.Submit, received: float) -> None:
        prompt, _, _ = self.require_started()
        if self.generation is not None and not self.generation.done():
            raise InvalidRequest("a generation is already running; cancel it first", code="busy")
        self.cancel_pause_timer()
        self.text, self.seq, self.planned_stable = frame.text, frame.seq, None
        tokens = prompt.final_tokens(frame.text)
        self.check_length(len(tokens))
        self.generation = asyncio.create_task(self.generate(tokens, received))
        self.generation.add_done_callback(
            functools.partial(self.after_generation, tokens, received)
        )

    def after_generation(
        self, tokens: list[int], received: float, task: asyncio.Task[None]
    ) -> None:
        """A cancel that landed before the answer streamed (the task never reached its own
        handler) still owes the client its `done`."""
        if task.cancelled() and self.cancel_requested:
            self.cancel_requested = False
            stats = self.warmer.stats if self.warmer else WarmStats()
            frame = self.done_frame(
                None, Usage(len(tokens), 0, 0), "cancelled", "", received, stats
            )
            self.notice = asyncio.ensure_future(self.send(frame))

    def cancel(self) -> None:
        if self.generation is not None and not self.generation.done():
            self.cancel_requested = True
            self.generation.cancel()

    def cancel_all(self) -> None:
        """Stop everything in flight: the pause timer, the warm-ups, the generation."""
        self.cancel_pause_timer()
        if self.warmer is not None:
            self.warmer.cancel()
        if self.generation is not None:
            self.generation.cancel()

    async def close(self) -> None:
        self.cancel_all()
        tasks = [self.generation, self.warmer.task if self.warmer else None]
        await asyncio.gather(*(task for task in tasks if task is not None), return_exceptions=True)

    # -- warm-ups ------------------------------------------------------------------------

    def require_started(self) -> tuple[SessionPrompt, WarmPlanner, Warmer]:
        if self.prompt is None or self.planner is None or self.warmer is None:
            raise InvalidRequest("send a start frame first", code="not_started")
        return self.prompt, self.planner, self.warmer

    def check_length(self, prompt_tokens: int) -> None:
        limit = self.facts.max_model_len if self.facts else None
        max_tokens = self.params.max_tokens or self.settings.max_tokens
        if limit is not None and prompt_tokens + max_tokens > limit:
            raise InvalidRequest(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds "
                f"the model's context of {limit} tokens",
                code="input_too_long",
            )

    def resume_warmups(self) -> None:
        if self.warmer is not None and self.warmups != "off":
            self.warmer.resume()

    def replan(self) -> WarmUp | None:
        """The planner's candidate for the current text (a warm-up retried after a pause)."""
        if self.prompt is None or self.planner is None or self.warmups == "off":
            return None
        stable = stable_prefix(self.text) if self.warmups == "keystroke" else ""
        return self.planner.on_input(self.warm_tokens(self.prompt, stable), self.seq)

    def warm_tokens(self, prompt: SessionPrompt, stable: str) -> tuple[int, ...]:
        """A warm-up's token ids, kept for the text: retries ask again for the same text."""
        if self.warm_memo is None or self.warm_memo[0] != stable:
            self.warm_memo = (stable, tuple(prompt.warm_tokens(stable)))
        return self.warm_memo[1]

    def restart_pause_timer(self) -> None:
        self.cancel_pause_timer()
        delay = self.settings.typing_pause_ms / 1000
        self.pause_timer = asyncio.get_running_loop().call_later(delay, self.on_pause)

    def cancel_pause_timer(self) -> None:
        if self.pause_timer is not None:
            self.pause_timer.cancel()
            self.pause_timer = None

    def on_pause(self) -> None:
        self.pause_timer = None
        with contextlib.suppress(InvalidRequest):  # not started, or too long: submit says so
            prompt, planner, warmer = self.require_started()
            tokens = prompt.final_tokens(self.text)
            self.check_length(len(tokens))
            warmer.offer(planner.on_pause(tokens, self.seq))

    # -- the final request ---------------------------------------------------------------

    async def generate(self, tokens: list[int], received: float) -> None:
        prompt, planner, warmer = self.require_started()
        await warmer.settle()
        try:
            await self.stream_answer(tokens, received, prompt, planner, warmer.stats)
        finally:
            warmer.release()
            warmer.stats = WarmStats()

    async def stream_answer(
        self,
        tokens: list[int],
        received: float,
        prompt: SessionPrompt,
        planner: WarmPlanner,
        stats: WarmStats,
    ) -> None:
        assert self.facts is not None
        body = {
            "model": self.facts.model,
            "prompt": tokens,
            "max_tokens": self.params.max_tokens or self.settings.max_tokens,
            "temperature": self.params.temperature,
            "priority": self.settings.final_priority,
            "cache_salt": self.salt,
        }
        ttft_ms: float | None = None
        output: list[str] = []
        usage, finish = Usage(len(tokens), 0, 0), None
        try:
            request_id = f"final-{self.id}-{self.seq}-{next(self.request_numbers)}"
            async for chunk in self.services.vllm.stream_completion(body, request_id):
                for choice in chunk.get("choices", []):
                    text = choice.get("text") or ""
                    finish = choice.get("finish_reason") or finish
                    if text:
                        if not output:  # the answer's opening was part of the prompt
                            text = prompt.frame.answer_opening + text
                        await self.send(protocol.token(text))
                        output.append(text)
                        if ttft_ms is None:
                            ttft_ms = (time.perf_counter() - received) * 1000
                if chunk.get("usage"):
                    usage = Usage.from_body(chunk["usage"])
        except asyncio.CancelledError:
            if not self.cancel_requested:
                raise  # the session is closing: nobody to tell
            finish = "cancelled"
        except UpstreamError as error:
            await self.send(error.frame())
            return
        finally:
            self.cancel_requested = False
        planner.assume_cached(tokens)  # the final request left its blocks in the cache
        done = self.done_frame(ttft_ms, usage, finish, "".join(output), received, stats)
        if self.sql_context is not None and finish != "cancelled":
            done |= await answer_query(self.sql_context, done["text"])
        await self.send(done)

    def done_frame(
        self,
        ttft_ms: float | None,
        usage: Usage,
        finish: str | None,
        text: str,
        received: float,
        stats: WarmStats,
    ) -> dict[str, Any]:
        return {
            "type": "done",
            "seq": self.seq,
            "ttft_ms": None if ttft_ms is None else round(ttft_ms, 2),
            "total_ms": round((time.perf_counter() - received) * 1000, 2),
            "prompt_tokens": usage.prompt_tokens,
            "cached_tokens": usage.cached_tokens,
            "completion_tokens": usage.completion_tokens,
            "finish_reason": finish,
            "text": text,
            "warm_requests": stats.requests,
            "warm_prefill_tokens": stats.prefill_tokens,
        }
