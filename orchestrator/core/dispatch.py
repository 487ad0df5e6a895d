"""The one way a warm-up reaches vLLM, for sessions (`warmer.py`) and `POST /v1/warm` alike.

A warm-up is a `max_tokens=1` completion of token ids at the warm-up priority under a salt.
It is admitted by the engine watch (a bound on warm-ups in flight, and a back-off while vLLM
fails), passes the global gate (warm-ups per second), is sent, and its outcome goes back to
the engine watch: ok, failed (vLLM refused the connection), or no verdict (cancelled, or an
error that may be our own lag).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from orchestrator.core.engine_watch import EngineWatch
from orchestrator.core.finals_first import FinalsFirst
from orchestrator.core.gate import WarmupGate
from orchestrator.core.metrics import Metrics
from orchestrator.core.vllm_client import Usage, VLLMClient
from orchestrator.errors import RateLimited, ServiceError, UpstreamUnavailable

# vLLM then publishes a BlockStored event for every block a request reuses, not only for the
# blocks it computes, so the index learns whole chains (even ones cached before it listened).
REPORT_FULL_CHAINS = {"kv_cache_report_mode": "full"}


class WarmDispatcher:
    def __init__(
        self,
        vllm: VLLMClient,
        gate: WarmupGate,
        engine: EngineWatch,
        priority: int,
        finals: FinalsFirst | None = None,
        turn_timeout_s: float = 60.0,
        metrics: Metrics | None = None,
        report_chains: bool = False,
    ) -> None:
        self.vllm = vllm
        self.gate = gate
        self.engine = engine
        self.priority = priority
        self.finals = finals or FinalsFirst()
        self.turn_timeout_s = turn_timeout_s
        self.metrics = metrics or Metrics()
        self.report_chains = report_chains  # KV events of reused blocks too (see kv_events.py)

    def try_admit(self) -> bool:
        """Take a slot for one warm-up; False while vLLM backs off or the bound is reached."""
        admitted = self.engine.try_start_warmup()
        if not admitted:
            self.metrics.warmup("dropped")
        return admitted

    def pause_s(self) -> float:
        return self.engine.pause_s()

    async def send(
        self,
        model: str,
        tokens: list[int],
        salt: str,
        request_id: str | None = None,
        on_gate_passed: Callable[[], None] | None = None,
        route: str | None = None,
    ) -> Usage:
        """Send an admitted warm-up (`pass_and_send`) and count its outcome
        (`core/metrics.py`): its usage, or a ServiceError."""
        try:
            usage = await self.pass_and_send(model, tokens, salt, request_id, on_gate_passed, route)
        except asyncio.CancelledError:
            self.metrics.warmup("dropped")
            raise
        except ServiceError:
            self.metrics.warmup("failed")
            raise
        self.metrics.warmup_landed(usage)
        return usage

    async def pass_and_send(
        self,
        model: str,
        tokens: list[int],
        salt: str,
        request_id: str | None,
        on_gate_passed: Callable[[], None] | None,
        route: str | None,
    ) -> Usage:
        """Wait for the finals in progress, pass the gate, then send."""
        waiting = time.perf_counter()
        await self.finals.wait_turn(self.turn_timeout_s)
        await self.gate.acquire()
        self.metrics.gate_wait.observe(time.perf_counter() - waiting)
        if on_gate_passed is not None:
            on_gate_passed()
        self.metrics.warmup("sent")
        body = {
            "model": model,
            "prompt": tokens,
            "max_tokens": 1,
            "temperature": 0.0,
            "priority": self.priority,
            "cache_salt": salt,
        }
        if self.report_chains:
            body["vllm_xargs"] = REPORT_FULL_CHAINS
        return Usage.from_body((await self.vllm.complete(body, request_id, route)).get("usage"))

    def finish(self, ok: bool | None) -> None:
        """An admitted warm-up ended: ok, failed, or None (no verdict)."""
        self.engine.finish_warmup(ok)

    async def warm_once(
        self, model: str, tokens: list[int], salt: str, route: str | None = None
    ) -> Usage:
        """Admit, send and report one warm-up (RateLimited when it is not admitted)."""
        if not self.try_admit():
            raise RateLimited("too many warm-ups in flight, or vLLM is failing; retry shortly")
        verdict: bool | None = None
        try:
            usage = await self.send(model, tokens, salt, route=route)
            verdict = True
            return usage
        except UpstreamUnavailable:
            verdict = False
            raise
        finally:
            self.finish(verdict)
