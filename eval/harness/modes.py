"""The five modes, each driven through the real `/ws/session` like any client would.

- cold: no warm-up at all;
- static: only the context (system prompt, schema) warmed at session start: the common practice;
- keystroke: the full planner, fed by the replay in real time;
- oracle: the final prompt sent twice under one salt, the first at the submit, the second
  right after it (or after the idle gap): its TTFT is the floor (fully cached);
- speculate: keystroke's warm-ups plus speculative finals (answer before Enter,
  `core/answering/speculation.py`), driven exactly as keystroke. It is the only mode whose
  sessions may speculate: every other one says `speculate: false` in its start frame, so a
  run's orchestrator can speculate for this mode without touching the others' figures.

Equal starts: every mode opens its session(s), and from the moment they are `ready` replays
the same input on the same schedule (`eval/harness/schedule.py`: each frame at a fixed offset from
`ready`) and submits at the same offset. No mode waits for its own warm-up: static's context
warm-up runs inside the typing time, as after a real page load (the server ignores the
keystrokes of a session that does not follow typing). Before each measured final the engine's
idle time is recorded and, with an idle gap, waited for (`eval/engine/state.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import websockets

from eval.engine.state import EngineState
from eval.harness.schedule import Schedule

SPECULATE = "speculate"
MODES = ("cold", "static", "keystroke", "oracle", SPECULATE)
DEFAULT_MODES = ("cold", "static", "keystroke", "oracle")  # a run's modes unless it names some
FRAME_TIMEOUT_S = 600.0
WARMUPS = {
    "cold": "off",
    "static": "context",
    "keystroke": "keystroke",
    "oracle": "off",
    SPECULATE: "keystroke",
}


class EvalError(Exception):
    """A session answered with an error frame, or not at all."""


@dataclass(frozen=True)
class CaseRun:
    """What one case in one mode needs: where, what, under which salt, when each frame goes."""

    ws_url: str
    context: dict[str, Any]
    schedule: Schedule
    namespace: str
    max_tokens: int
    engine: EngineState


@dataclass
class Timeline:
    """When this mode's frames went, as planned from `ready` and as they really went."""

    first_input_s: float | None  # planned offset of the first input frame (None: no input)
    submit_s: float  # planned offset of the submit
    late_s: float = 0.0  # the most any frame went after its planned moment
    idle_before_final_s: float | None = None  # the engine's idle time when the final went
    waited_for_idle_s: float = 0.0  # how long the idle gap held the final back


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


def start_frame(run: CaseRun, warmups: str, max_tokens: int, speculate: bool) -> dict[str, Any]:
    return {
        "type": "start",
        "context": run.context,
        "params": {"max_tokens": max_tokens, "temperature": 0.0},
        "warmups": warmups,
        "cache_namespace": run.namespace,
        "speculate": speculate,
    }


@contextlib.asynccontextmanager
async def opened(
    run: CaseRun, warmups: str, max_tokens: int, speculate: bool = False
) -> AsyncIterator[Client]:
    """A session started with `warmups` (speculative finals only if `speculate`) and answered
    `ready`."""
    async with websockets.connect(run.ws_url, max_size=2**24) as connection:
        client = Client(connection)
        await client.send(start_frame(run, warmups, max_tokens, speculate))
        await client.until("ready")
        yield client


async def run_mode(mode: str, run: CaseRun) -> tuple[dict[str, Any], Timeline]:
    """The `done` frame of one case in one mode, and when its frames went."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    timeline = Timeline(run.schedule.first_input_s, run.schedule.submit_s)
    if mode == "oracle":  # the first pass only fills the cache: one token is enough
        async with opened(run, "off", 1) as primer, opened(run, "off", run.max_tokens) as floor:
            await replay_and_submit(primer, run, timeline, time.monotonic(), measured=False)
            done = await submit(floor, run, timeline, seq=1, measured=True)
    else:
        speculate = mode == SPECULATE
        async with opened(run, WARMUPS[mode], run.max_tokens, speculate) as client:
            done = await replay_and_submit(client, run, timeline, time.monotonic(), measured=True)
    return done, timeline


async def replay_and_submit(
    client: Client, run: CaseRun, timeline: Timeline, ready_at: float, *, measured: bool
) -> dict[str, Any]:
    """Send the schedule's input frames, each at its offset from `ready_at`; then submit at
    the schedule's submit offset; the `done` frame."""
    reader = asyncio.create_task(client.until("done"))
    try:
        for seq, (offset_s, text) in enumerate(run.schedule.inputs, start=1):
            timeline.late_s = max(timeline.late_s, await at(ready_at + offset_s))
            await client.send({"type": "input", "text": text, "seq": seq})
        timeline.late_s = max(timeline.late_s, await at(ready_at + run.schedule.submit_s))
        seq = len(run.schedule.inputs) + 1
        await before_final(run, timeline, measured)
        await client.send({"type": "submit", "text": run.schedule.final_text, "seq": seq})
        done = await reader
    finally:
        reader.cancel()
    done["warm_frames"] = [f for f in client.frames if f["type"] == "warm"]
    return done


async def submit(
    client: Client, run: CaseRun, timeline: Timeline, *, seq: int, measured: bool
) -> dict[str, Any]:
    """Submit the final text at once (after the idle gap, when measured); the `done` frame."""
    await before_final(run, timeline, measured)
    await client.send({"type": "submit", "text": run.schedule.final_text, "seq": seq})
    done = await client.until("done")
    done["warm_frames"] = [f for f in client.frames if f["type"] == "warm"]
    return done


async def before_final(run: CaseRun, timeline: Timeline, measured: bool) -> None:
    """Hold a measured final for the idle gap, and record the engine's idle time."""
    if not measured:
        return
    timeline.waited_for_idle_s = await run.engine.hold_for_idle_gap()
    timeline.idle_before_final_s = run.engine.idle_s()


async def at(moment: float) -> float:
    """Sleep until the monotonic `moment`; how late it is by then (0 when on time)."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))
    return max(0.0, time.monotonic() - moment)
