"""One typing client of the keystroke load benchmark: a `/ws/session` WebSocket that types its
question key by key on a schedule, and records when it sent each keystroke and which `warm`
and `error` frames came back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


@dataclass
class TypingSession:
    index: int
    ws: ClientConnection
    text: str
    session_id: str = ""
    sends: dict[int, float] = field(default_factory=dict)  # seq -> time.time() of the send
    skipped: int = 0  # keystrokes dropped because this client fell behind its schedule
    warm_frames: list[tuple[int, bool]] = field(default_factory=list)  # (seq, submit_ready)
    errors: list[dict[str, Any]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._read()
        self.ready.set()  # nothing more will come: release whoever waits
        self.drained.set()

    async def _read(self) -> None:
        async for message in self.ws:
            frame = json.loads(message)
            kind = frame.get("type")
            if kind == "warm":
                self.warm_frames.append((int(frame["seq"]), bool(frame["submit_ready"])))
            elif kind == "ready":
                self.session_id = str(frame["session_id"])
                self.ready.set()
            elif kind == "error" and "'barrier'" in str(frame.get("message")):
                self.drained.set()
            elif kind == "error":
                self.errors.append(frame)

    async def type(
        self, rng: random.Random, interval: float, jitter: float, start: float, end: float
    ) -> None:
        """Type `self.text` key by key from `start` until the loop's clock reaches `end`."""
        due = start + rng.uniform(0, interval)
        loop = asyncio.get_running_loop()
        seq = 0
        while True:
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
                now = loop.time()
            if now >= end or seq >= len(self.text):
                break
            if now > due + interval:  # fell behind by a whole interval: skip, do not burst
                self.skipped += int((now - due) / interval)
                due = now
            seq += 1
            frame = json.dumps({"type": "input", "text": self.text[:seq], "seq": seq})
            self.sends[seq] = time.time()
            await self.ws.send(frame)
            due += interval * rng.uniform(1 - jitter, 1 + jitter)
        # Handled after every earlier frame: its error answer says the session is drained.
        await self.ws.send('{"type":"barrier"}')


async def open_session(
    url: str, index: int, text: str, system: str, gate: asyncio.Semaphore, compression: bool
) -> TypingSession:
    async with gate:
        ws = await connect(
            url,
            open_timeout=60,
            close_timeout=5,
            proxy=None,
            compression="deflate" if compression else None,
        )
        session = TypingSession(index, ws, text)
        session.reader = asyncio.create_task(session.read())
        await ws.send(json.dumps({"type": "start", "context": {"system": system}}))
        await asyncio.wait_for(session.ready.wait(), timeout=60)
        if not session.session_id:
            await close_session(session)
            raise RuntimeError(f"session {index} was not started: {session.errors}")
        return session


async def close_session(session: TypingSession) -> None:
    with contextlib.suppress(ConnectionClosed, OSError):
        await session.ws.close()
    if session.reader is not None:
        await session.reader
