"""Fixtures of the tests that run sessions against the fake vLLM (the orchestrator's and the
eval's; `tests/conftest.py` loads them as a plugin): one fake vLLM and one orchestrator per
module, on uvicorn in the test's own event loop; a test that needs other settings (or another
upstream) starts its own orchestrator with `start_app`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.fake_vllm import FakeVLLM
from testkit.serving import serve
from tests.fakes import fake_on_a_port, let_go, session_tasks, wait_until
from tests.sessions import App, Defaults, StartApp, settings_for


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    """What the module's orchestrators and fake are like; a module overrides this fixture."""
    return Defaults()


@pytest.fixture(scope="module")
async def fake_vllm(orchestrator_defaults: Defaults) -> AsyncIterator[FakeVLLM]:
    async with fake_on_a_port(FakeVLLM(strict=orchestrator_defaults.strict_fake)) as vllm:
        yield vllm


@pytest.fixture
async def fake(fake_vllm: FakeVLLM) -> AsyncIterator[FakeVLLM]:
    """The module's fake vLLM, reset; whatever a test held is let go when it ends."""
    fake_vllm.reset()
    yield fake_vllm
    await let_go(fake_vllm)


@pytest.fixture(scope="module")
async def shared_app(
    fake_vllm: FakeVLLM, tokenizer_dir: Path, orchestrator_defaults: Defaults
) -> AsyncIterator[tuple[Settings, FastAPI, str]]:
    """One orchestrator with the module's settings, shared by the module's tests (each test
    has its own sessions; nothing else in it outlives a test)."""
    settings = settings_for(fake_vllm.url, tokenizer_dir, orchestrator_defaults)
    app = create_app(settings)
    async with serve(app, websockets=True) as url:
        yield settings, app, url


@pytest.fixture
async def start_app(
    fake: FakeVLLM,
    shared_app: tuple[Settings, FastAPI, str],
    tokenizer_dir: Path,
    orchestrator_defaults: Defaults,
) -> AsyncIterator[StartApp]:
    """The shared orchestrator, or (`fresh`, other settings, another upstream) a new one."""
    key = orchestrator_defaults.key
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *,
            fresh: bool = False,
            upstream: str | None = None,
            transport: httpx.AsyncBaseTransport | None = None,
            **overrides: Any,
        ) -> App:
            if not (fresh or overrides or upstream or transport):
                return App(*shared_app, stack, key)
            url = upstream or fake.url
            settings = settings_for(url, tokenizer_dir, orchestrator_defaults, **overrides)
            app = create_app(settings, upstream_transport=transport)
            served = await stack.enter_async_context(serve(app, websockets=True))
            return App(settings, app, served, stack, key)

        yield start
    # The sessions closed with their sockets: let them finish before the next test resets the
    # fake, so none of their warm-ups lands in another test's record.
    await wait_until(lambda: not session_tasks(), what="the sessions' tasks to end")
