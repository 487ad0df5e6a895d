"""The services a request handler may use, built once per application lifetime."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from starlette.requests import HTTPConnection

from orchestrator.database import Database
from orchestrator.prompt import PromptRenderer
from orchestrator.settings import Settings
from orchestrator.vllm_client import VLLMClient


@dataclass
class Services:
    """Built in the lifespan, closed with it; reached through `services_of(request)`."""

    settings: Settings
    http: httpx.AsyncClient
    vllm: VLLMClient
    renderer: PromptRenderer | None
    database: Database | None


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services
