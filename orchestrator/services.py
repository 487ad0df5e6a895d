"""The services a request handler may use, built once per application lifetime."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from starlette.requests import HTTPConnection

from orchestrator.database import Database
from orchestrator.gate import WarmupGate
from orchestrator.prompt import PromptRenderer
from orchestrator.settings import Settings
from orchestrator.text_to_sql import SqlContexts
from orchestrator.vllm_client import EngineFacts, VLLMClient

if TYPE_CHECKING:
    from orchestrator.session import Session


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
    sessions: dict[str, Session] = field(default_factory=dict)  # live WebSocket sessions by id
    _facts: EngineFacts | None = field(default=None, repr=False)
    _facts_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def engine_facts(self) -> EngineFacts:
        """Model, block size and context length of the served model (read once, then kept)."""
        async with self._facts_lock:
            if self._facts is None:
                self._facts = await self.vllm.facts(self.settings.block_size)
            return self._facts

    def forget_engine_facts(self) -> None:
        """After vLLM restarts it may serve another model: read the facts again next time."""
        self._facts = None


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services
