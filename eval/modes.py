"""The four modes, each driven through the real `/ws/session` like any client would.

- cold: no warm-up at all;
- static: only the context (system prompt + schema) warmed at session start;
- keystroke: the full planner, fed by a seeded typing replay in real time;
- oracle: the final prompt sent twice under one salt; the second TTFT is the floor.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from eval.replay import PAUSE_BEFORE_SUBMIT_S, keystrokes

MODES = ("cold", "static", "keystroke", "oracle")
FRAME_TIMEOUT_S = 600.0


class EvalError(Exception):
    """A session answered with an error frame, or not at all."""


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


async def session(
    ws_url: str, database: str, namespace: str, warmups: str, max_tokens: int
) -> tuple[Client, websockets.ClientConnection]:
    connection = await websockets.connect(ws_url, max_size=2**24)
    client = Client(connection)
    await client.send(
        {
            "type": "start",
            "context": {"database": database},
            "params": {"max_tokens": max_tokens, "temperature": 0.0},
            "warmups": warmups,
            "cache_namespace": namespace,
        }
    )
    await client.until("ready")
    return client, connection


async def run_mode(
    mode: str, ws_url: str, database: str, question: str, namespace: str, seed: int, max_tokens: int
) -> dict[str, Any]:
    """The `done` frame of one case in one mode."""
    if mode == "oracle":  # first pass only fills the cache: one token is enough
        await submit_once(ws_url, database, question, namespace, "off", 1)
        return await submit_once(ws_url, database, question, namespace, "off", max_tokens)
    if mode in ("cold", "static"):
        warmups = "off" if mode == "cold" else "context"
        return await submit_once(ws_url, database, question, namespace, warmups, max_tokens)
    if mode == "keystroke":
        return await typed(ws_url, database, question, namespace, seed, max_tokens)
    raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")


async def submit_once(
    ws_url: str, database: str, question: str, namespace: str, warmups: str, max_tokens: int
) -> dict[str, Any]:
    client, connection = await session(ws_url, database, namespace, warmups, max_tokens)
    async with connection:
        if warmups == "context":
            await client.until("warm")  # the schema is in the cache, as after a page load
        await client.send({"type": "submit", "text": question, "seq": 1})
        return await client.until("done")


async def typed(
    ws_url: str, database: str, question: str, namespace: str, seed: int, max_tokens: int
) -> dict[str, Any]:
    client, connection = await session(ws_url, database, namespace, "keystroke", max_tokens)
    async with connection:
        reader = asyncio.create_task(client.until("done"))
        seq = 0
        for seq, stroke in enumerate(keystrokes(question, seed), start=1):
            await asyncio.sleep(stroke.delay_s)
            await client.send({"type": "input", "text": stroke.text, "seq": seq})
        await asyncio.sleep(PAUSE_BEFORE_SUBMIT_S)
        await client.send({"type": "submit", "text": question, "seq": seq + 1})
        return await reader
