"""The eval's own subscription to vLLM's KV events (`--kv-events-config`, which the launcher
turns on): every batch goes into `kv_count.StoredBlocks`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import msgspec
import zmq
import zmq.asyncio

from eval.engine.kv_count import StoredBlocks
from orchestrator.core.cache.kv_events import DECODER

SUBSCRIBE_SETTLE_S = 0.5  # a SUB socket misses what is published before it has joined
QUIET_S = 1.0  # the events of a finished request may trail its answer


class KVWatch:
    def __init__(self, url: str) -> None:
        self.url = url
        self.blocks = StoredBlocks()
        self.batches = 0
        self.last_at = time.monotonic()
        self.on_activity: Callable[[float], None] | None = None  # the engine worked at (monotonic)

    async def run(self, context: zmq.asyncio.Context) -> None:
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.url)
        try:
            while True:
                parts = await sub.recv_multipart()
                with contextlib.suppress(msgspec.DecodeError):
                    batch = DECODER.decode(parts[-1])
                    self.blocks.apply(batch)
                    self.batches += 1
                    self.last_at = time.monotonic()
                    if self.on_activity is not None:  # the batch's engine step, on our clock
                        self.on_activity(self.last_at - max(0.0, time.time() - batch.ts))
        finally:
            sub.close()

    async def settle(self, most_s: float = 10.0) -> None:
        """Wait until no batch came for a moment (or `most_s`): trailing events are in."""
        deadline = time.monotonic() + most_s
        while (quiet := time.monotonic() - self.last_at) < QUIET_S:
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(QUIET_S - quiet)


@contextlib.asynccontextmanager
async def watching(url: str | None) -> AsyncIterator[KVWatch | None]:
    """A KVWatch on vLLM's event PUB socket at `url` (None: events off, nothing counted)."""
    if url is None:
        yield None
        return
    context = zmq.asyncio.Context()
    watch = KVWatch(url)
    task = asyncio.create_task(watch.run(context))
    await asyncio.sleep(SUBSCRIBE_SETTLE_S)
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        context.term()
