"""vLLM's own word on its KV cache: the ZMQ feed of `--kv-events-config` events.

vLLM publishes, per engine step, a msgpack `KVEventBatch` of `BlockStored` (hashes, parent,
token ids, block size, extra keys with the `cache_salt`), `BlockRemoved` and
`AllBlocksCleared` on a PUB socket, as multipart `(topic, seq, payload)`; a ROUTER socket
(the replay endpoint) answers `start seq` with every buffered batch from there, then
`seq = -1`. The feed keeps `resident.ResidentBlocks` in step with it: it replays what it
missed before it listened and after a gap in the sequence, and hands each batch's evictions
to `on_eviction` (the sessions re-warm what they lost).

The structs mirror `vllm/distributed/kv_events.py` (only the fields read here: events are
msgpack maps, so the others are skipped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import zmq
import zmq.asyncio

from orchestrator.core.cache.resident import BlockHash, Eviction, ResidentBlocks

log = logging.getLogger(__name__)
END_SEQ = -1
REPLAY_TIMEOUT_S = 2.0
FeedState = Literal["waiting", "live"]


class BlockStored(msgspec.Struct, tag=True, omit_defaults=True):
    block_hashes: list[BlockHash]
    parent_block_hash: BlockHash | None
    token_ids: list[int]
    block_size: int
    medium: str | None = None
    extra_keys: list[tuple[Any, ...] | None] | None = None
    group_idx: int | None = None


class BlockRemoved(msgspec.Struct, tag=True, omit_defaults=True):
    block_hashes: list[BlockHash]
    medium: str | None = None
    group_idx: int | None = None


class AllBlocksCleared(msgspec.Struct, tag=True, omit_defaults=True):
    pass


class KVEventBatch(msgspec.Struct, array_like=True, omit_defaults=True):
    ts: float
    events: list[BlockStored | BlockRemoved | AllBlocksCleared]
    data_parallel_rank: int | None = None


DECODER = msgspec.msgpack.Decoder(type=KVEventBatch)


def in_device_cache(event: BlockStored | BlockRemoved) -> bool:
    """Events of the engine's own KV cache (not an offloading tier), first cache group."""
    return event.medium in (None, "GPU") and event.group_idx in (None, 0)


def apply_batch(index: ResidentBlocks, batch: KVEventBatch) -> Eviction:
    """Apply one batch to `index`; what it evicted."""
    eviction = Eviction()
    for event in batch.events:
        if isinstance(event, AllBlocksCleared):
            index.clear()
        elif not in_device_cache(event):
            continue
        elif isinstance(event, BlockStored):
            index.stored(
                event.block_hashes,
                event.parent_block_hash,
                event.token_ids,
                event.block_size,
                event.extra_keys,
            )
        else:
            index.removed(event.block_hashes, eviction)
    return eviction


class KVEventFeed:
    """Subscribes to one vLLM's KV events and keeps `index` in step with them."""

    def __init__(
        self,
        url: str,
        replay_url: str | None,
        on_eviction: Callable[[Eviction], None],
        index: ResidentBlocks | None = None,
    ) -> None:
        self.url = url
        self.replay_url = replay_url
        self.on_eviction = on_eviction
        self.index = index if index is not None else ResidentBlocks()
        self.state: FeedState = "waiting"
        self.last_seq: int | None = None
        self.batches = 0
        self.gaps = 0
        self.last_ts = 0.0
        self.context = zmq.asyncio.Context()

    @property
    def live(self) -> bool:
        return self.state == "live"

    def status(self) -> dict[str, Any]:
        return {
            "source": "kv-events" if self.live else "belief",
            "state": self.state,
            "url": self.url,
            "replay_url": self.replay_url,
            "last_seq": self.last_seq,
            "batches": self.batches,
            "gaps": self.gaps,
            "resident_blocks": len(self.index),
        }

    def reset(self) -> None:
        """vLLM restarted: its cache is empty and its sequence starts again."""
        self.index.clear()
        self.last_seq, self.last_ts = None, 0.0

    async def run(self) -> None:
        """Run until cancelled."""
        sub = self.context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.url)
        try:
            await self.replay(0)  # what vLLM cached before we listened (its buffer)
            while True:
                parts = await sub.recv_multipart()
                if len(parts) >= 3:
                    await self.receive(int.from_bytes(parts[-2], "big", signed=True), parts[-1])
        finally:
            sub.close()
            self.context.term()

    async def receive(self, seq: int, payload: bytes) -> None:
        batch = self.decode(seq, payload)
        if batch is None:
            return
        if self.last_seq is not None and seq <= self.last_seq:
            if batch.ts <= self.last_ts:
                return  # already applied (replayed, or delivered twice)
            log.info("vLLM's KV event sequence started again: it restarted")
            self.reset()
        elif self.last_seq is not None and seq > self.last_seq + 1:
            self.gaps += 1
            await self.replay(self.last_seq + 1)
            if self.last_seq is not None and seq <= self.last_seq:
                return
        self.apply(seq, batch)

    @staticmethod
    def decode(seq: int, payload: bytes) -> KVEventBatch | None:
        try:
            return DECODER.decode(payload)
        except msgspec.DecodeError as error:
            log.warning("undecodable KV event batch %d: %s", seq, error)
            return None

    def apply(self, seq: int, batch: KVEventBatch) -> None:
        self.last_seq, self.last_ts, self.state = seq, batch.ts, "live"
        self.batches += 1
        eviction = apply_batch(self.index, batch)
        if eviction:
            self.on_eviction(eviction)

    async def replay(self, start: int) -> None:
        """Ask the replay endpoint for every buffered batch from `start`; apply them."""
        if self.replay_url is None:
            return
        dealer = self.context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(self.replay_url)
        try:
            await dealer.send_multipart((b"", start.to_bytes(8, "big", signed=True)))
            while True:
                parts = await asyncio.wait_for(dealer.recv_multipart(), REPLAY_TIMEOUT_S)
                seq = int.from_bytes(parts[-2], "big", signed=True)
                if seq == END_SEQ:
                    self.state = "live"
                    return
                batch = self.decode(seq, parts[-1])
                if batch is not None and (self.last_seq is None or seq > self.last_seq):
                    self.apply(seq, batch)
        except TimeoutError:
            log.info("no answer from the KV event replay endpoint %s", self.replay_url)
        finally:
            dealer.close()
