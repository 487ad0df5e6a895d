"""One typing session: keystrokes in, warm-ups out, then the streamed answer.

The route (`ws.py`) parses frames and calls `start`, `on_input`, `submit`, `cancel` and
`close`; this class turns them into planner decisions (`planner.py`) and vLLM requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from orchestrator import protocol
from orchestrator.errors import InvalidRequest, ServiceError, UpstreamError
from orchestrator.planner import WarmPlanner, WarmUp, stable_prefix
from orchestrator.prompt import SessionPrompt
from orchestrator.salt import tenant_salt
from orchestrator.services import Services
from orchestrator.text_to_sql import SqlContext, answer_query
from orchestrator.vllm_client import EngineFacts, Usage

log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class WarmStats:
    requests: int = 0
    prefill_tokens: int = 0  # prompt tokens the warm-ups made vLLM compute (not cache hits)
    failures: int = 0


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
        self.stats = WarmStats()
        self.pause_timer: asyncio.TimerHandle | None = None
        self.warm_task: asyncio.Task[None] | None = None
        self.generation: asyncio.Task[None] | None = None
        self.cancel_requested = False
        self.warm_dispatched = False  # the current warm-up has passed the gate
        self.request_numbers = itertools.count()  # request ids: warm-<session>-<seq>-<n>

    # -- client frames -------------------------------------------------------------------

    async def start(self, frame: protocol.Start) -> None:
        renderer = self.services.renderer
        if renderer is None:
            raise InvalidRequest("this server has no tokenizer loaded", code="not_configured")
        system = frame.context.system
        self.sql_context = None
        if frame.context.database is not None:
            self.sql_context = self.services.sql.get(frame.context.database)
            system = self.sql_context.system_prompt
        self.cancel_all()
        self.facts = await self.services.engine_facts()
        history = [turn.model_dump() for turn in frame.context.history]
        self.prompt = renderer.session_prompt(system, history)
        self.planner = WarmPlanner(self.facts.block_size)
        self.salt = tenant_salt(self.settings.server_secret, self.tenant, frame.cache_namespace)
        self.params, self.warmups = frame.params, frame.warmups
        self.text, self.seq, self.stats = "", 0, WarmStats()
        await self.send(
            protocol.ready(self.id, self.facts.model, self.facts.block_size, self.warmups)
        )
        if self.warmups != "off":  # the context itself, before the first keystroke
            self.offer(self.planner.on_input(self.prompt.warm_tokens(""), 0))

    def on_input(self, frame: protocol.Input) -> None:
        prompt, planner = self.require_started()
        self.text, self.seq = frame.text, frame.seq
        if self.warmups != "keystroke":
            return
        tokens = prompt.warm_tokens(stable_prefix(frame.text))
        self.check_length(len(tokens))
        self.offer(planner.on_input(tokens, frame.seq))
        self.restart_pause_timer()

    async def submit(self, frame: protocol.Submit, received: float) -> None:
        prompt, _ = self.require_started()
        if self.generation is not None and not self.generation.done():
            raise InvalidRequest("a generation is already running; cancel it first", code="busy")
        self.cancel_pause_timer()
        self.text, self.seq = frame.text, frame.seq
        tokens = prompt.final_tokens(frame.text)
        self.check_length(len(tokens))
        self.generation = asyncio.create_task(self.generate(tokens, received))

    def cancel(self) -> None:
        if self.generation is not None and not self.generation.done():
            self.cancel_requested = True
            self.generation.cancel()

    def cancel_all(self) -> None:
        """Stop everything in flight: the pause timer, the warm-up, the generation."""
        self.cancel_pause_timer()
        for task in (self.warm_task, self.generation):
            if task is not None:
                task.cancel()

    async def close(self) -> None:
        self.cancel_all()
        tasks = [task for task in (self.warm_task, self.generation) if task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- warm-ups ------------------------------------------------------------------------

    def require_started(self) -> tuple[SessionPrompt, WarmPlanner]:
        if self.prompt is None or self.planner is None:
            raise InvalidRequest("send a start frame first", code="not_started")
        return self.prompt, self.planner

    def engine(self) -> tuple[EngineFacts, WarmPlanner]:
        if self.facts is None or self.planner is None:
            raise InvalidRequest("send a start frame first", code="not_started")
        return self.facts, self.planner

    def check_length(self, prompt_tokens: int) -> None:
        limit = self.facts.max_model_len if self.facts else None
        max_tokens = self.params.max_tokens or self.settings.max_tokens
        if limit is not None and prompt_tokens + max_tokens > limit:
            raise InvalidRequest(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds "
                f"the model's context of {limit} tokens",
                code="input_too_long",
            )

    def generating(self) -> bool:
        return self.generation is not None and not self.generation.done()

    def offer(self, warm: WarmUp | None) -> None:
        while warm is not None and self.generating():
            # A submit is under way and its own request caches the prompt: drop the warm-up.
            warm = self.planner.on_warm_done(warm, ok=False) if self.planner else None
        if warm is not None:
            self.warm_task = asyncio.create_task(self.run_warm(warm))

    async def settle_warm_up(self) -> None:
        """Before the final request: drop a warm-up still queued at the gate, and wait for one
        already sent, so the final request finds its blocks instead of computing them again
        beside it."""
        task = self.warm_task
        if task is None or task.done():
            return
        if not self.warm_dispatched:
            task.cancel()
        await asyncio.wait({task}, timeout=self.settings.request_timeout_s)

    async def run_warm(self, warm: WarmUp) -> None:
        facts, planner = self.engine()
        try:
            await self.services.gate.acquire()
        except asyncio.CancelledError:
            planner.on_warm_done(warm, ok=False)
            raise
        self.warm_dispatched = True
        try:
            await self.send_warm(warm, facts, planner)
        finally:
            self.warm_dispatched = False

    async def send_warm(self, warm: WarmUp, facts: EngineFacts, planner: WarmPlanner) -> None:
        started = time.perf_counter()
        body = {
            "model": facts.model,
            "prompt": list(warm.tokens),
            "max_tokens": 1,
            "temperature": 0.0,
            "priority": self.settings.warm_priority,
            "cache_salt": self.salt,
        }
        try:
            reply = await self.services.vllm.complete(
                body, f"warm-{self.id}-{warm.seq}-{next(self.request_numbers)}"
            )
            usage = Usage.from_body(reply.get("usage"))
        except ServiceError as error:
            self.stats.failures += 1
            log.warning("warm-up failed: %s", error.message)
            self.offer(planner.on_warm_done(warm, ok=False))
            await self.send({**error.frame(), "code": "warmup_failed"})
            return
        self.stats.requests += 1
        self.stats.prefill_tokens += usage.prompt_tokens - usage.cached_tokens
        elapsed_ms = (time.perf_counter() - started) * 1000
        following = planner.on_warm_done(warm, ok=True)
        cached = planner.cached_tokens
        await self.send(
            protocol.warm(warm.seq, len(warm.tokens), cached, elapsed_ms, warm.submit_ready)
        )
        self.offer(following)

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
        if self.prompt is None or self.planner is None:
            return
        with contextlib.suppress(InvalidRequest):  # too long: the submit will say so
            tokens = self.prompt.final_tokens(self.text)
            self.check_length(len(tokens))
            self.offer(self.planner.on_pause(tokens, self.seq))

    # -- the final request ---------------------------------------------------------------

    async def generate(self, tokens: list[int], received: float) -> None:
        facts, planner = self.engine()
        await self.settle_warm_up()
        body = {
            "model": facts.model,
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
        done = self.done_frame(ttft_ms, usage, finish, "".join(output), received)
        if self.sql_context is not None and finish != "cancelled":
            done |= await answer_query(self.sql_context, done["text"])
        await self.send(done)
        self.stats = WarmStats()

    def done_frame(
        self, ttft_ms: float | None, usage: Usage, finish: str | None, text: str, received: float
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
            "warm_requests": self.stats.requests,
            "warm_prefill_tokens": self.stats.prefill_tokens,
        }
