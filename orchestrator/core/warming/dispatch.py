"""The one way a warm-up reaches vLLM: sessions (`warmer.py`), `POST /v1/warm`, named states,
the state keeper and the re-warm of popular contexts alike.

A warm-up is admitted by the engine watch (a bound on warm-ups outstanding, and a back-off
while vLLM fails), then goes out as pieces: each waits for its turn in the warm-up scheduler
(`warm_scheduler.py`: the bound on pieces inside the engine, fair queues, room for finals),
passes the rate gate, and is sent as a `max_tokens=1` completion of token ids at the warm-up
priority under a salt. Its outcome goes back to the engine watch: ok, failed (vLLM refused
the connection), or no verdict (cancelled, or an error that may be our own lag).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.core.engine.prefill_cost import PrefillCost
from orchestrator.core.engine.vllm_client import Usage, VLLMClient
from orchestrator.core.engine.watch import EngineWatch
from orchestrator.core.metrics import Metrics
from orchestrator.core.planning.planner import split_pieces, usable_blocks
from orchestrator.core.warming.gate import WarmupGate
from orchestrator.core.warming.scheduler import WarmClass, WarmScheduler
from orchestrator.errors import RateLimited, ServiceError, UpstreamUnavailable

# vLLM then publishes a BlockStored event for every block a request reuses, not only for the
# blocks it computes, so the index learns whole chains (even ones cached before it listened).
REPORT_FULL_CHAINS = {"kv_cache_report_mode": "full"}
DEFAULT_PIECE_TOKENS = 256


@dataclass(frozen=True)
class WarmRequest:
    """One piece to send: its prompt, and who it is for (the scheduler's queues)."""

    model: str
    tokens: list[int]
    salt: str
    route: str | None = None  # the routing key (replicas behind a router)
    owner: str = ""  # a session id, or a source's name: one piece waits per owner
    tenant: str = ""
    klass: WarmClass = WarmClass.INTERACTIVE
    request_id: str | None = None


class WarmDispatcher:
    """Admits warm-ups (the engine watch) and sends their pieces to vLLM in the scheduler's
    turns, through the rate gate, counting each piece's outcome."""

    def __init__(
        self,
        vllm: VLLMClient,
        gate: WarmupGate,
        engine: EngineWatch,
        priority: int,
        scheduler: WarmScheduler | None = None,
        metrics: Metrics | None = None,
        report_chains: bool = False,
        piece_tokens: int = DEFAULT_PIECE_TOKENS,
        cost: PrefillCost | None = None,
    ) -> None:
        self.vllm = vllm
        self.gate = gate
        self.engine = engine
        self.priority = priority
        self.scheduler = scheduler or WarmScheduler()
        self.metrics = metrics or Metrics()
        self.report_chains = report_chains  # KV events of reused blocks too (see kv_events.py)
        self.piece_tokens = piece_tokens  # a multiple of every block size served
        self.cost = PrefillCost() if cost is None else cost  # the shared fit (almost done?)
        self.owners = itertools.count()

    def try_admit(self) -> bool:
        """Take a slot for one warm-up; False while vLLM backs off or the bound is reached."""
        admitted = self.engine.try_start_warmup()
        if not admitted:
            self.metrics.warmup("dropped")
        return admitted

    def pause_s(self) -> float:
        """Seconds until warm-ups may go to vLLM again (0: now; the engine watch's back-off)."""
        return self.engine.pause_s()

    async def send_to_vllm(
        self,
        request: WarmRequest,
        on_sent: Callable[[], None] | None = None,
    ) -> Usage:
        """Send one piece of an admitted warm-up when the scheduler gives it a turn, and count
        its outcome (`core/metrics.py`): its usage, or a ServiceError."""
        waiting = time.perf_counter()
        sent = False
        try:
            async with self.scheduler.piece(request.owner, request.tenant, request.klass):
                await self.gate.acquire()
                self.metrics.gate_wait.observe(time.perf_counter() - waiting)
                self.metrics.warmup("sent")
                sent = True
                if on_sent is not None:
                    on_sent()
                body = self.body(request)
                reply = await self.vllm.complete(body, request.request_id, request.route)
        except asyncio.CancelledError:
            self.metrics.warmup("cancelled" if sent else "dropped")
            raise
        except ServiceError:
            self.metrics.warmup("failed")
            raise
        usage = Usage.from_body(reply.get("usage"))
        self.metrics.warmup_landed(usage)
        return usage

    def body(self, request: WarmRequest) -> dict[str, object]:
        """The `max_tokens=1` completion request that warms `request`'s prompt."""
        body: dict[str, object] = {
            "model": request.model,
            "prompt": request.tokens,
            "max_tokens": 1,
            "temperature": 0.0,
            "priority": self.priority,
            "cache_salt": request.salt,
        }
        if self.report_chains:
            body["vllm_xargs"] = REPORT_FULL_CHAINS
        return body

    def finish(self, ok: bool | None) -> None:
        """An admitted warm-up ended: ok, failed, or None (no verdict)."""
        self.engine.finish_warmup(ok)

    async def warm_once(
        self,
        model: str,
        tokens: list[int],
        salt: str,
        route: str | None = None,
        tenant: str = "",
        klass: WarmClass = WarmClass.INTERACTIVE,
        block_size: int | None = None,
    ) -> Usage:
        """Admit one warm-up and send it piece by piece (RateLimited when it is not admitted);
        the usage of all its pieces (prompt: the whole; cached: what was cached before it,
        not what its own pieces cached for the next). Without `block_size`: one piece."""
        if not self.try_admit():
            raise RateLimited("too many warm-ups in flight, or vLLM is failing; retry shortly")
        owner = f"{klass.name.lower()}-{next(self.owners)}"
        pieces = [tuple(tokens)]
        if block_size is not None and usable_blocks(len(tokens), block_size):
            pieces = split_pieces(tokens, 0, block_size, self.piece_tokens)
        verdict: bool | None = None
        try:
            hit, own = 0, 0  # cached before this warm-up; cached by its own earlier pieces
            for piece in pieces:
                request = WarmRequest(model, list(piece), salt, route, owner, tenant, klass)
                usage = await self.send_to_vllm(request)
                hit += max(0, usage.cached_tokens - own)
                own = usable_blocks(len(piece), block_size or len(piece)) * (block_size or 0)
            verdict = True
            return Usage(len(pieces[-1]), 1, hit)
        except UpstreamUnavailable:
            verdict = False
            raise
        finally:
            self.finish(verdict)
