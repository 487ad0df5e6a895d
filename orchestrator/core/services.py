"""What every session of an application shares, built once for the application's lifetime."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.core.contexts import ContextSource
from orchestrator.core.dispatch import WarmDispatcher
from orchestrator.core.engine_watch import EngineWatch
from orchestrator.core.frames import Send, ServerFrame
from orchestrator.core.http_final import HttpFinal
from orchestrator.core.kv_events import KVEventFeed
from orchestrator.core.metrics import Metrics
from orchestrator.core.prefill_cost import PrefillCost
from orchestrator.core.prompt import PromptRenderer
from orchestrator.core.registry import SessionRegistry
from orchestrator.core.resident import Eviction, ResidentBlocks
from orchestrator.core.state_keeper import StateKeeper
from orchestrator.core.vllm_client import EngineFacts, VLLMClient
from orchestrator.settings import Settings


class LiveSession(Protocol):
    """What the shared services ask of a session (`session.Session` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def tenant(self) -> str: ...

    @property
    def salt(self) -> str: ...

    @property
    def send(self) -> Send: ...

    def resume_warmups(self) -> None: ...

    def open_http_final(self, messages: list[dict[str, Any]]) -> HttpFinal: ...

    def close_http_final(self, final: HttpFinal) -> None: ...

    def on_evicted(self, eviction: Eviction, index: ResidentBlocks) -> bool: ...


@dataclass
class SessionServices:
    settings: Settings
    vllm: VLLMClient
    renderer: PromptRenderer | None
    dispatcher: WarmDispatcher
    contexts: ContextSource
    sessions: SessionRegistry[LiveSession]
    kv_feed: KVEventFeed | None = None  # vLLM's KV events, when configured
    state_keeper: StateKeeper | None = None  # keeps named prefix states resident
    rewarms_after_eviction: int = 0
    metrics: Metrics = field(default_factory=Metrics)  # the dispatcher's own, in an app
    prefill_cost: PrefillCost = field(default_factory=PrefillCost)  # scorecards' cold TTFT
    _facts: EngineFacts | None = field(default=None, repr=False)
    _facts_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def engine(self) -> EngineWatch:
        return self.dispatcher.engine

    async def engine_facts(self) -> EngineFacts:
        """Model, block size and context length of the served model (read once, then kept)."""
        async with self._facts_lock:
            if self._facts is None:
                self._facts = await self.vllm.facts(self.settings.block_size)
            return self._facts

    def cache_view_status(self) -> dict[str, Any]:
        """Whose word on the cache the sessions follow: vLLM's KV events, or their own belief."""
        if self.kv_feed is None:
            return {"source": "belief", "state": "off"}
        return {**self.kv_feed.status(), "rewarms_after_eviction": self.rewarms_after_eviction}

    def on_eviction(self, eviction: Eviction) -> None:
        """vLLM evicted blocks: the sessions whose warmed chains were cut warm them again."""
        index = self.kv_feed.index if self.kv_feed else None
        if index is None:
            return
        if self.state_keeper is not None:
            self.state_keeper.on_eviction(eviction, index)
        for session in self.sessions.all():
            if session.salt in eviction.salts and session.on_evicted(eviction, index):
                self.rewarms_after_eviction += 1
                self.metrics.rewarmed_after_eviction()

    async def broadcast(self, frame: ServerFrame) -> None:
        """Send a frame to every live session."""
        for session in self.sessions.all():
            await session.send(frame)

    async def probe_engine(self) -> None:
        await self.vllm.request("GET", "/v1/models", timeout=1.0)

    def on_engine_recovered(self) -> None:
        """vLLM answers again, maybe restarted with another model and surely with an empty
        cache: read its facts again next time, and let every session (and the state keeper)
        warm again at once."""
        self._facts = None
        if self.kv_feed is not None:
            self.kv_feed.reset()
        if self.state_keeper is not None:
            self.state_keeper.engine_recovered()
        for session in self.sessions.all():
            session.resume_warmups()

    def watched(self) -> bool:
        """Whether anyone needs vLLM watched: live sessions, or live states to keep."""
        keeping = self.state_keeper is not None and self.state_keeper.has_live()
        return len(self.sessions) > 0 or keeping

    async def watch_engine(self) -> None:
        """Run until cancelled: tell the sessions when vLLM goes away and comes back."""
        await self.engine.watch(
            self.probe_engine, self.broadcast, self.watched, self.on_engine_recovered
        )
