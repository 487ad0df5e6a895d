"""The re-warm on the real vLLM: contexts in the prefix index, none of them cached (a vLLM that
just restarted), are warmed when the engine watch says vLLM is back, under their own tenant's
salt, and the next request of a top context finds every full block of it cached. The
orchestrator's own secret is fresh, so nothing under its salts was cached before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import websockets
from fastapi import FastAPI

from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.core.popularity.index import reusable_prefix
from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from orchestrator.web.services import Services
from testkit.serving import serve
from tests.conftest import Engine
from tests.engine.test_session_engine import SYSTEM

pytestmark = pytest.mark.engine
KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
CONTEXTS = {
    "tenant-a": (SYSTEM + " Keep to the facts." * 30, "Which customers ordered twice?"),
    "tenant-b": ("You answer questions about trains in one sentence. " * 12, "When is the next?"),
}


async def final(url: str, key: str, system: str, text: str) -> dict[str, Any]:
    """A final request with no warm-up of its own: its `done` frame."""
    ws_url = url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        start = {"type": "start", "context": {"system": system}, "warmups": "off"}
        await ws.send(json.dumps({**start, "api_key": key}))
        while (frame := json.loads(await ws.recv()))["type"] != "ready":
            assert frame["type"] != "error", frame
        await ws.send(json.dumps({"type": "submit", "text": text, "seq": 1}))
        while (frame := json.loads(await ws.recv()))["type"] != "done":
            assert frame["type"] != "error", frame
        done: dict[str, Any] = frame
        return done


async def test_after_a_restart_the_top_contexts_are_warm_before_anyone_asks(
    engine: Engine, data_dir: Path, renderer: PromptRenderer
) -> None:
    settings = Settings(
        vllm_url=engine.url, data_dir=data_dir, enable_database=False, api_keys=KEYS,
        max_tokens=4,
    )  # fmt: skip
    app: FastAPI = create_app(settings)
    async with serve(app, websockets=True) as url:
        services: Services = app.state.services
        assert services.popularity is not None
        assert services.rewarm is not None
        block_size = (await services.engine_facts()).block_size
        prompts = {}
        for tenant, (system, question) in CONTEXTS.items():  # traffic from before the restart
            prompts[tenant] = renderer.session_prompt(system).final_tokens(question)
            for _ in range(3):
                services.popularity.record(tenant, None, prompts[tenant], block_size, "final")

        services.on_engine_recovered()  # what the engine watch calls when vLLM is back
        assert services.rewarm.task is not None
        progress = await services.rewarm.task
        assert progress.state == "done"
        assert progress.warmed == progress.planned == 2
        assert progress.cached_tokens == 0  # nothing was there: vLLM computed all of it
        planned = sum(len(reusable_prefix(p, block_size)) for p in prompts.values())
        assert progress.planned_tokens == planned
        assert progress.prefill_tokens >= planned

        for tenant, (system, question) in CONTEXTS.items():
            key = next(k for k, t in KEYS.items() if t == tenant)
            done = await final(url, key, system, question)
            full_blocks = len(reusable_prefix(prompts[tenant], block_size))
            assert done["prompt_tokens"] == len(prompts[tenant])
            assert done["cached_tokens"] >= full_blocks
        # Under another tenant's salt the same prompt finds nothing of theirs.
        system, question = CONTEXTS["tenant-a"]
        foreign = await final(url, "key-b", system, question)
        assert foreign["cached_tokens"] == 0
