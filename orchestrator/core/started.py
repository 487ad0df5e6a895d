"""What a session's `start` frame fixed: its engine, prompt, planner, warmer and strategy."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core import frames
from orchestrator.core.contexts import SessionContext
from orchestrator.core.engine.vllm_client import EngineFacts
from orchestrator.core.planning.planner import WarmPlanner
from orchestrator.core.planning.prompt import SessionPrompt
from orchestrator.core.warming.modes import WarmStrategy
from orchestrator.core.warming.warmer import Warmer


@dataclass(frozen=True)
class Started:
    """What a `start` frame fixed, until the next one."""

    facts: EngineFacts
    prompt: SessionPrompt
    planner: WarmPlanner
    warmer: Warmer
    strategy: WarmStrategy
    params: frames.GenerationParams
    salt: str
    context: SessionContext | None
    messages: tuple[tuple[str, str], ...] = ()  # the context as chat messages (role, content)
    namespace: str | None = None  # the cache namespace the salt came from
    label: str | None = None  # the named context (a text-to-SQL database), if any
