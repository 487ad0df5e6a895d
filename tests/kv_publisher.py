"""A stand-in for vLLM's ZMQ KV event publisher (PUB plus a replay ROUTER), for unit tests.

It speaks vLLM's wire format: multipart `(topic, seq, msgpack KVEventBatch)`, and on the
replay socket every buffered batch from the asked sequence number, then `seq = -1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import msgspec
import zmq
import zmq.asyncio

from orchestrator.core.cache.kv_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
)
from testkit.serving import free_port

Event = BlockStored | BlockRemoved | AllBlocksCleared
END = (-1).to_bytes(8, "big", signed=True)


def stored(
    hashes: Sequence[int],
    parent: int | None,
    tokens: Sequence[int],
    salt: str | None = None,
    block_size: int = 4,
) -> BlockStored:
    """Blocks of `block_size` tokens chained from `parent` (the first under `salt`)."""
    extra = [(salt,) if salt and parent is None and i == 0 else None for i in range(len(hashes))]
    return BlockStored(list(hashes), parent, list(tokens), block_size, "GPU", extra)


def chain_of(tokens: Sequence[int], salt: str, block_size: int, first: int = 1) -> BlockStored:
    """The event vLLM sends for a prompt's full blocks, hashes numbered from `first`."""
    blocks = len(tokens) // block_size
    hashes = range(first, first + blocks)
    return stored(list(hashes), None, tokens[: blocks * block_size], salt, block_size)


class FakeKVPublisher:
    def __init__(self) -> None:
        self.context = zmq.asyncio.Context()
        self.port = free_port()
        self.replay_port = free_port()
        self.pub = self.context.socket(zmq.PUB)
        self.pub.bind(f"tcp://127.0.0.1:{self.port}")
        self.router = self.context.socket(zmq.ROUTER)
        self.router.bind(f"tcp://127.0.0.1:{self.replay_port}")
        self.buffer: list[tuple[int, bytes]] = []
        self.seq = 0
        self.replays: list[int] = []
        self.encoder = msgspec.msgpack.Encoder()
        self.task = asyncio.create_task(self.serve_replays())

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def replay_url(self) -> str:
        return f"tcp://127.0.0.1:{self.replay_port}"

    def batch(self, *events: Event, publish: bool = True) -> int:
        """Buffer a batch (and publish it unless `publish` is False: a lost message)."""
        payload = self.encoder.encode(KVEventBatch(time.time(), list(events)))
        seq, self.seq = self.seq, self.seq + 1
        self.buffer.append((seq, payload))
        if publish:
            self.pub.send_multipart((b"", seq.to_bytes(8, "big"), payload))
        return seq

    def restart(self) -> None:
        """A vLLM that started again: its sequence begins at 0, its buffer is empty."""
        self.seq, self.buffer = 0, []

    async def serve_replays(self) -> None:
        while True:
            client, _, start = await self.router.recv_multipart()
            self.replays.append(int.from_bytes(start, "big"))
            for seq, payload in self.buffer:
                if seq >= self.replays[-1]:
                    await self.router.send_multipart(
                        (client, b"", b"", seq.to_bytes(8, "big"), payload)
                    )
            await self.router.send_multipart((client, b"", b"", END, b""))

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.pub.close(0)
        self.router.close(0)
        self.context.term()
