"""Is vLLM up? Warm-ups back off while it is not, and sessions hear about it within a second.

One watcher task per application polls vLLM while sessions are open; on a change it tells
every session (an `error` frame when vLLM goes away, an `engine` frame when it is back) and
clears the cached engine facts, since a restarted vLLM may serve another model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.core.engine.backoff import Backoff
from orchestrator.core.frames import Engine, Error, ServerFrame
from orchestrator.errors import UpstreamError, UpstreamUnavailable

log = logging.getLogger(__name__)
POLL_S = 0.5
SLOW_PROBES_FOR_DOWN = 3  # a refused connection counts at once; timeouts may be our own lag


class EngineWatch:
    def __init__(self, max_warmups_in_flight: int, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.up = True
        self.backoff = Backoff(first_s=0.25, max_s=5.0, jitter=0.5)  # jitter: no herd
        self.paused_until = 0.0
        self.max_in_flight = max_warmups_in_flight
        self.in_flight = 0
        self.slow_probes = 0

    # -- warm-up admission ---------------------------------------------------------------

    def pause_s(self) -> float:
        """Seconds until warm-ups may go to vLLM again (0: now)."""
        return max(0.0, self.paused_until - self.clock())

    def try_start_warmup(self) -> bool:
        if self.pause_s() > 0 or self.in_flight >= self.max_in_flight:
            return False
        self.in_flight += 1
        return True

    def finish_warmup(self, ok: bool | None) -> None:
        """A warm-up ended: ok, failed, or None when it was called off (no verdict)."""
        self.in_flight = max(0, self.in_flight - 1)
        if ok is True:
            self.succeeded()
        elif ok is False:
            self.failed()

    def failed(self) -> None:
        self.paused_until = self.clock() + self.backoff.failed()

    def succeeded(self) -> None:
        self.backoff.succeeded()
        self.paused_until = 0.0

    # -- the watcher ---------------------------------------------------------------------

    async def watch(
        self,
        probe: Callable[[], Awaitable[Any]],
        broadcast: Callable[[ServerFrame], Awaitable[None]],
        has_sessions: Callable[[], bool],
        on_recovery: Callable[[], None],
    ) -> None:
        """Run until cancelled: probe vLLM every POLL_S while sessions are open."""
        while True:
            await asyncio.sleep(POLL_S)
            if not has_sessions():
                continue
            try:
                await probe_twice(probe)
                up, reason, self.slow_probes = True, "", 0
            except UpstreamUnavailable as error:
                up, reason = False, error.message
            except UpstreamError as error:
                self.slow_probes += 1
                up, reason = self.slow_probes < SLOW_PROBES_FOR_DOWN, error.message
            if up == self.up:
                continue
            self.up = up
            if up:
                log.info("vLLM answers again")
                self.succeeded()
                on_recovery()
                await broadcast(Engine(ok=True))
            else:
                log.warning("vLLM stopped answering: %s", reason)
                self.failed()
                message = f"{reason}; warm-ups are paused until it is back"
                await broadcast(Error(code="upstream_unavailable", message=message))


async def probe_twice(probe: Callable[[], Awaitable[Any]]) -> None:
    """`probe()`, asked again at once if vLLM seems gone: a pooled connection that vLLM closed
    as it was reused ("Server disconnected without sending a response") says nothing of vLLM,
    and one false alarm tells every session that vLLM is down."""
    try:
        await probe()
    except UpstreamUnavailable:
        await probe()


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
