"""What every session of an application shares, built once for the application's lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.core.answering.answer import Answer
from orchestrator.core.answering.final_request import Finals
from orchestrator.core.cache.kv_events import KVEventFeed
from orchestrator.core.cache.resident import Eviction, ResidentBlocks
from orchestrator.core.cache.rewarm import Rewarmer
from orchestrator.core.contexts import ContextSource
from orchestrator.core.engine.prefill_cost import PrefillCost
from orchestrator.core.engine.vllm_client import EngineFacts, VLLMClient
from orchestrator.core.engine.watch import EngineWatch
from orchestrator.core.frames import Error, Send, ServerFrame
from orchestrator.core.metrics import Metrics
from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.core.popularity.popularity import Popularity, PopularityKind
from orchestrator.core.registry import SessionRegistry
from orchestrator.core.states.keeper import StateKeeper
from orchestrator.core.warming.dispatch import WarmDispatcher
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

    def chat_final(
        self,
        messages: list[dict[str, Any]],
        request_id: str,
        received: float,
        fields: dict[str, Any],
    ) -> AbstractAsyncContextManager[Answer]: ...

    def on_evicted(self, eviction: Eviction, index: ResidentBlocks) -> bool: ...


class EngineFactsCache:
    """Model, block size and context length of the served model: read once, kept until vLLM
    comes back from an outage (maybe restarted with another model)."""

    def __init__(self, vllm: VLLMClient, block_size: int | None) -> None:
        self.vllm = vllm
        self.block_size = block_size  # the settings' word; None: vLLM's /metrics tells
        self.facts: EngineFacts | None = None
        self.lock = asyncio.Lock()

    async def get(self) -> EngineFacts:
        async with self.lock:
            if self.facts is None:
                self.facts = await self.vllm.facts(self.block_size)
            return self.facts

    def forget(self) -> None:
        self.facts = None


class EvictionFollower:
    """vLLM evicted blocks (its KV events, `kv_events.py`): the named states and the sessions
    whose warmed chains were cut warm them again."""

    def __init__(
        self,
        index: ResidentBlocks,
        sessions: SessionRegistry[LiveSession],
        state_keeper: StateKeeper,
        metrics: Metrics,
    ) -> None:
        self.index = index  # what the KV events say vLLM holds
        self.sessions = sessions
        self.state_keeper = state_keeper
        self.metrics = metrics
        self.rewarms = 0  # sessions warmed again after an eviction

    def __call__(self, eviction: Eviction) -> None:
        self.state_keeper.on_eviction(eviction, self.index)
        for session in self.sessions.all():
            if session.salt in eviction.salts and session.on_evicted(eviction, self.index):
                self.rewarms += 1
                self.metrics.rewarmed_after_eviction()


@dataclass(frozen=True, kw_only=True)
class SessionServices:
    """Built once in the application's start-up (`web/startup.py`), each part ready: nothing
    is assigned to it afterwards."""

    settings: Settings
    vllm: VLLMClient
    facts: EngineFactsCache
    renderer: PromptRenderer | None
    dispatcher: WarmDispatcher
    finals: Finals  # sends every final request
    contexts: ContextSource
    sessions: SessionRegistry[LiveSession]
    state_keeper: StateKeeper  # keeps named prefix states resident
    evictions: EvictionFollower
    kv_feed: KVEventFeed | None  # vLLM's KV events, when configured
    metrics: Metrics  # the dispatcher's own
    prefill_cost: PrefillCost  # the shared fit behind scorecards' cold TTFT
    popularity: Popularity | None  # prefix popularity (`popularity/`)
    rewarm: Rewarmer | None  # warms the index's top contexts when vLLM (re)starts

    @property
    def rewarms_after_eviction(self) -> int:
        return self.evictions.rewarms

    async def engine_facts(self) -> EngineFacts:
        """Model, block size and context length of the served model (read once, then kept)."""
        return await self.facts.get()

    @property
    def engine(self) -> EngineWatch:
        return self.dispatcher.engine

    def cache_view_status(self) -> dict[str, Any]:
        """Whose word on the cache the sessions follow: vLLM's KV events, or their own belief."""
        if self.kv_feed is None:
            return {"source": "belief", "state": "off"}
        return {**self.kv_feed.status(), "rewarms_after_eviction": self.rewarms_after_eviction}

    def record_prefix(
        self,
        tenant: str,
        namespace: str | None,
        tokens: Sequence[int],
        block_size: int,
        kind: PopularityKind,
        label: str | None = None,
    ) -> None:
        """A final request was sent, or a warm-up landed: into prefix popularity, if kept."""
        if self.popularity is not None:
            self.popularity.record(tenant, namespace, tokens, block_size, kind, label)

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
        self.facts.forget()
        if self.kv_feed is not None:
            self.kv_feed.reset()
        self.state_keeper.engine_recovered()
        for session in self.sessions.all():
            session.resume_warmups()
        if self.rewarm is not None:
            self.rewarm.trigger("engine_recovered")

    def rewarm_owed(self) -> bool:
        """Would a restart of vLLM leave something to re-warm (then it is watched even with
        no session open)?"""
        return self.rewarm is not None and self.popularity is not None and self.popularity.wanted()

    def watched(self) -> bool:
        """Whether anyone needs vLLM watched: live sessions, live states to keep, or popular
        contexts to re-warm after a restart."""
        keeping = self.state_keeper.has_live()
        return len(self.sessions) > 0 or keeping or self.rewarm_owed()

    async def watch_engine(self) -> None:
        """Run until cancelled: tell the sessions when vLLM goes away and comes back."""
        await self.engine.watch(
            self.probe_engine, self.broadcast, self.watched, self.on_engine_recovered
        )

    async def watch_replicas(self, poll_s: float = 1.0) -> None:
        """Run until cancelled: when a replica behind the router goes away (or comes back, and
        the router moves keys back to its empty cache), every session hears it and warms again
        from the start, wherever its key now lands (vLLM's KV events are not followed behind a
        router, and which replica held a session is the router's secret)."""
        up: set[str] | None = None
        while self.vllm.replicas:
            await asyncio.sleep(poll_s)
            if not len(self.sessions):
                continue
            status = await self.vllm.replica_status()
            now = {replica["url"] for replica in status if replica["ok"]}
            if up is not None and now != up:
                gone = sorted(up - now)
                message = (
                    f"replica {', '.join(gone)} stopped answering" if gone else "a replica is back"
                )
                await self.broadcast(
                    Error(code="replica_changed", message=f"{message}; warming again")
                )
                for session in self.sessions.all():
                    session.resume_warmups()
            up = now
