"""The engine watch's probe: one connection vLLM closed as it was reused is no outage."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.core.engine import watch as engine_watch
from orchestrator.core.engine.watch import EngineWatch
from orchestrator.core.frames import ServerFrame
from orchestrator.errors import UpstreamUnavailable


async def watched(failures: list[bool], monkeypatch: pytest.MonkeyPatch) -> list[ServerFrame]:
    """Run the watch over probes that fail where `failures` says; what it broadcast."""
    monkeypatch.setattr(engine_watch, "POLL_S", 0.001)
    answers = iter(failures)
    heard: list[ServerFrame] = []

    async def probe() -> None:
        if next(answers, False):
            raise UpstreamUnavailable("Server disconnected without sending a response")

    async def broadcast(frame: ServerFrame) -> None:
        heard.append(frame)

    task = asyncio.create_task(EngineWatch(8).watch(probe, broadcast, lambda: True, lambda: None))
    await asyncio.sleep(0.1)
    await engine_watch.stop_task(task)
    return heard


async def test_a_probe_that_fails_once_then_answers_is_no_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await watched([True, False, True, False], monkeypatch) == []


async def test_a_probe_that_fails_twice_in_a_row_is_an_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heard = [frame.model_dump() for frame in await watched([True, True], monkeypatch)]
    assert [frame["type"] for frame in heard] == ["error", "engine"]  # down, then back
    assert heard[0]["code"] == "upstream_unavailable"
