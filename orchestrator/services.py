"""The services a request handler may use, built once per application lifetime."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import HTTPConnection

from orchestrator.engine_watch import EngineWatch
from orchestrator.gate import WarmupGate
from orchestrator.limits import SessionRegistry
from orchestrator.prompt import PromptRenderer
from orchestrator.settings import Settings
from orchestrator.text_to_sql.contexts import SqlContexts
from orchestrator.text_to_sql.postgres import Database
from orchestrator.vllm_client import EngineFacts, VLLMClient


@dataclass
class Services:
    """Built in the lifespan, closed with it; reached through `services_of(request)`."""

    settings: Settings
    http: httpx.AsyncClient
    vllm: VLLMClient
    renderer: PromptRenderer | None
    database: Database | None
    gate: WarmupGate
    sql: SqlContexts
    sessions: SessionRegistry
    engine: EngineWatch
    _facts: EngineFacts | None = field(default=None, repr=False)
    _facts_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def engine_facts(self) -> EngineFacts:
        """Model, block size and context length of the served model (read once, then kept)."""
        async with self._facts_lock:
            if self._facts is None:
                self._facts = await self.vllm.facts(self.settings.block_size)
            return self._facts

    async def broadcast(self, frame: dict[str, Any]) -> None:
        """Send a frame to every live session."""
        for session in self.sessions.all():
            await session.send(frame)

    async def probe_engine(self) -> None:
        await self.vllm.request("GET", "/v1/models", timeout=1.0)

    def on_engine_recovered(self) -> None:
        """vLLM answers again, maybe restarted with another model and surely with an empty
        cache: read its facts again next time, and let every session warm again at once."""
        self._facts = None
        for session in self.sessions.all():
            session.resume_warmups()


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services
