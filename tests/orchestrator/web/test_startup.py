"""Start-up and shutdown (`web/startup.py`): a failure half-way releases what was opened."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.core.cache.rewarm import Rewarmer
from orchestrator.logs import LOGGER, LogRing
from orchestrator.settings import Settings
from orchestrator.web import startup
from orchestrator.web.app import lifespan_for


class Opened:
    """What start-up opened: the HTTP client to vLLM."""

    def __init__(self) -> None:
        self.clients: list[httpx.AsyncClient] = []

    def client(self, *args: Any) -> httpx.AsyncClient:
        client = startup_make_http_client(*args)
        self.clients.append(client)
        return client


startup_make_http_client = startup.make_http_client


def rings() -> list[logging.Handler]:
    return [h for h in logging.getLogger(LOGGER).handlers if isinstance(h, LogRing)]


def background() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}


async def test_a_failure_half_way_releases_what_was_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last step fails (the start-up re-warm): the watchers, the keeper and popularity's
    saver had started, the HTTP client and the log ring were open; none is left."""
    opened = Opened()
    monkeypatch.setattr(startup, "make_http_client", opened.client)

    def fails(self: Rewarmer, reason: str, tenant: str | None = None) -> None:
        raise RuntimeError("the re-warm could not start")

    monkeypatch.setattr(Rewarmer, "trigger", fails)
    settings = Settings(enable_database=False, load_tokenizer=False, popularity_enabled=True)
    before, rings_before = background(), rings()
    app = FastAPI()
    with pytest.raises(RuntimeError, match="could not start"):
        async with lifespan_for(app, settings, httpx.MockTransport(lambda r: httpx.Response(503))):
            pass  # pragma: no cover - never reached
    assert [client.is_closed for client in opened.clients] == [True]
    assert rings() == rings_before
    await asyncio.sleep(0)
    assert background() - before == set()


async def test_shutdown_releases_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    opened = Opened()
    monkeypatch.setattr(startup, "make_http_client", opened.client)
    settings = Settings(enable_database=False, load_tokenizer=False, popularity_enabled=True)
    before, rings_before = background(), rings()
    app = FastAPI()
    async with lifespan_for(app, settings, httpx.MockTransport(lambda r: httpx.Response(503))):
        assert background() - before  # the watchers and the rest run while it serves
        assert len(rings()) == len(rings_before) + 1
    assert [client.is_closed for client in opened.clients] == [True]
    assert rings() == rings_before
    await asyncio.sleep(0)
    assert background() - before == set()
