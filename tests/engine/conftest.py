"""Engine tests render prompts with the tokenizer of the very folder vLLM serves, and share a
chat-only orchestrator in front of the real vLLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import serve_in_thread
from tests.conftest import Engine
from vllm_launch.model import default_model_dir


def kv_events_of(engine: Engine) -> dict[str, str]:
    """The settings that make an orchestrator follow `engine`'s KV events (none: belief)."""
    if engine.kv_events is None:
        return {}
    return {"kv_events_url": engine.kv_events[0], "kv_events_replay_url": engine.kv_events[1]}


@pytest.fixture(scope="session")
def renderer(data_dir: Path) -> PromptRenderer:
    return PromptRenderer.load(str(default_model_dir(data_dir)))


@pytest.fixture(scope="module")
def app_url(engine: Engine, data_dir: Path) -> Iterator[str]:
    settings = Settings(
        vllm_url=engine.url,
        **kv_events_of(engine),
        data_dir=data_dir,
        enable_database=False,
        typing_pause_ms=300,
        max_tokens=8,
        ws_frames_per_second=1000,  # typing is time-compressed here
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url
