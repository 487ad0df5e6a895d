"""The four modes, each driven through the real `/ws/session` like any client would.

- cold: no warm-up at all;
- static: only the context (system prompt, schema) warmed at session start: the common practice;
- keystroke: the full planner, fed by the replay in real time;
- oracle: the final prompt sent twice under one salt, the first at the submit, the second
  right after it: its TTFT is the floor (fully cached, on an engine that just worked).

Every mode replays the same input and submits at the same moment after it (the server ignores
the keystrokes of a session that does not follow typing): the engine idles while a static or
cold user types as it would for real (a cached prompt answered in about 110 ms right after
other work, 150-240 ms after 3-15 s idle, on the CPU), and typists who share the engine load
it as users would.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import websockets

from eval.replay import Replay

MODES = ("cold", "static", "keystroke", "oracle")
FRAME_TIMEOUT_S = 600.0
WARMUPS = {"cold": "off", "static": "context", "keystroke": "keystroke", "oracle": "off"}


class EvalError(Exception):
    """A session answered with an error frame, or not at all."""


@dataclass(frozen=True)
class CaseRun:
    """What one case in one mode needs: where, what, under which salt, how it is entered."""

    ws_url: str
    context: dict[str, Any]
    text: str
    namespace: str
    replay: Replay
    seed: int
    max_tokens: int


class Client:
    """One WebSocket session: send frames, read them into a list, wait for one kind."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection
        self.frames: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(frame))

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            raw = await asyncio.wait_for(self.connection.recv(), timeout=FRAME_TIMEOUT_S)
            frame: dict[str, Any] = json.loads(raw)
            self.frames.append(frame)
            if frame["type"] == "error" and frame.get("code") != "warmup_failed":
                raise EvalError(f"{frame['code']}: {frame['message']}")
            if frame["type"] == kind:
                return frame


async def session(run: CaseRun, warmups: str, max_tokens: int) -> Client:
    connection = await websockets.connect(run.ws_url, max_size=2**24)
    client = Client(connection)
    await client.send(
        {
            "type": "start",
            "context": run.context,
            "params": {"max_tokens": max_tokens, "temperature": 0.0},
            "warmups": warmups,
            "cache_namespace": run.namespace,
        }
    )
    await client.until("ready")
    return client


async def run_mode(mode: str, run: CaseRun) -> dict[str, Any]:
    """The `done` frame of one case in one mode."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    if mode == "oracle":  # the first pass only fills the cache: one token is enough
        await submit_once(run, "off", 1, replay=True)
        return await submit_once(run, "off", run.max_tokens, replay=False)
    return await submit_once(run, WARMUPS[mode], run.max_tokens, replay=True)


async def submit_once(run: CaseRun, warmups: str, max_tokens: int, replay: bool) -> dict[str, Any]:
    client = await session(run, warmups, max_tokens)
    async with client.connection:
        if warmups == "context":
            await client.until("warm")  # the context is cached, as after a page load
        reader = asyncio.create_task(client.until("done"))
        try:
            seq = await type_in(client, run) if replay else 0
            await client.send({"type": "submit", "text": run.text, "seq": seq + 1})
            done = await reader
        finally:
            reader.cancel()
    done["warm_frames"] = [f for f in client.frames if f["type"] == "warm"]
    return done


async def type_in(client: Client, run: CaseRun) -> int:
    """Send the replay's input frames in real time; wait the submit pause; the last seq."""
    seq = 0
    for seq, event in enumerate(run.replay.events(run.text, run.seed), start=1):
        await asyncio.sleep(event.delay_s)
        await client.send({"type": "input", "text": event.text, "seq": seq})
    await asyncio.sleep(run.replay.submit_delay(run.text, run.seed))
    return seq
