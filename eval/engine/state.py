"""The engine's state before each final: busy or idle, sampled from vLLM's `/metrics`.

A cached prompt's TTFT on a CPU moves by 40-100% with what the engine did just before (about
110 ms right after other work, 150-240 ms after seconds of idle), so the eval records, for every
measured final, how long the engine had been idle when it went (`idle_before_final_s`), and
offers one control, recorded in the report's settings as `engine_state`:

- ``as-typed`` (idle gap 0): each final goes when its replay says; a keystroke final then
  meets an engine that just ran its warm-ups, a static or cold one an engine idle while its
  user typed. The recorded idle times say how far the modes' states differ.
- ``idle-gap`` (`--idle-gap-s G` > 0): every measured final, in every mode, waits until the
  engine has run nothing for G seconds. Every final then meets the same idle engine, and what
  separates the modes is what their caches hold; a keystroke final also waits for its own
  warm-ups in flight, so this control measures the cache, not the race at Enter.

Busy means a request running or waiting in a sample of `/metrics` (every `interval_s`: a
request that starts and ends between two samples is missed there) or an engine step that
published KV events (every request does: the orchestrator asks vLLM to report the blocks it
reuses as well as those it computes), where the eval follows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator

import httpx

GAUGES = re.compile(
    r"^vllm:num_requests_(?:running|waiting)\{[^}]*\}\s+([0-9.eE+-]+)", re.MULTILINE
)


def engine_state_label(idle_gap_s: float) -> str:
    return "idle-gap" if idle_gap_s > 0 else "as-typed"


class EngineState:
    """Samples vLLM's running and waiting requests; tells idle time and busy shares."""

    def __init__(
        self, http: httpx.AsyncClient, vllm_url: str, idle_gap_s: float, interval_s: float = 0.1
    ) -> None:
        self.http, self.url = http, f"{vllm_url}/metrics"
        self.idle_gap_s, self.interval_s = idle_gap_s, interval_s
        self.samples: list[tuple[float, bool]] = []  # (monotonic time, busy)
        self.last_busy: float | None = None
        self.started = time.monotonic()

    def idle_s(self) -> float | None:
        """Seconds since the engine was last seen busy (since sampling began if never);
        None before the first sample."""
        if not self.samples:
            return None
        return round(time.monotonic() - (self.last_busy or self.started), 3)

    async def hold_for_idle_gap(self) -> float:
        """Wait until the engine has been idle for the idle gap; the seconds waited."""
        began = time.monotonic()
        while self.idle_gap_s > 0:
            idle = self.idle_s()
            if idle is not None and idle >= self.idle_gap_s:
                break
            await asyncio.sleep(self.interval_s)
        return round(time.monotonic() - began, 3)

    def note_busy(self, at: float) -> None:
        """The engine worked at monotonic time `at` (seen another way than `/metrics`)."""
        self.last_busy = max(self.last_busy or at, at)

    def busy_share(self, spans: list[tuple[float, float]]) -> float | None:
        """The share of samples within `spans` (monotonic start, end) that found it busy."""
        inside = [busy for at, busy in self.samples if any(a <= at <= b for a, b in spans)]
        return round(sum(inside) / len(inside), 3) if inside else None

    def sample(self, metrics: str) -> None:
        found = GAUGES.findall(metrics)
        if not found:
            return
        now = time.monotonic()
        busy = any(float(value) > 0 for value in found)
        self.samples.append((now, busy))
        if busy:
            self.last_busy = now

    async def run(self) -> None:
        while True:
            began = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                self.sample((await self.http.get(self.url)).text)
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))


@contextlib.asynccontextmanager
async def sampling(
    http: httpx.AsyncClient, vllm_url: str, idle_gap_s: float
) -> AsyncIterator[EngineState]:
    state = EngineState(http, vllm_url, idle_gap_s)
    task = asyncio.create_task(state.run())
    try:
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
