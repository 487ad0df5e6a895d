"""Engine tests render prompts with the tokenizer of the very folder vLLM serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.prompt import PromptRenderer
from vllm_launch.model import default_model_dir


@pytest.fixture(scope="session")
def renderer(data_dir: Path) -> PromptRenderer:
    return PromptRenderer.load(str(default_model_dir(data_dir)))
