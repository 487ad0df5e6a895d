"""Warm prefill counted from the engine's side: the blocks vLLM stored, per cache salt.

vLLM publishes a `BlockStored` event for every block it computes and caches, whether the
request that computed it finished, was preempted or was aborted halfway: the count includes
every warm-up piece that did work, landed or cancelled. The orchestrator's requests also ask
vLLM to report the cached blocks they reuse (`kv_cache_report_mode: full`), so a block is
counted when it is stored while not resident (first computed, or computed again after an
eviction), never when a request merely reused it. Each case runs under a salt of its own, so
the blocks stored under it are that case's work, from which the eval takes out what its final
request computed itself:

    warm blocks = blocks stored under the salt - final blocks
    final blocks = floor((prompt + completion - 1) / B) - cached / B

(the final caches every full block of its prompt and its answer but the last token's, from its
first uncached block on). Only full blocks are cached, so a warm-up's last partial block (up to
B - 1 tokens each) is computed but never seen: the count is a lower bound by that much per
warm-up request. It is also low where a warm-up and the final compute the same blocks at once
(a long warm-up still running at the submit): a block stored twice counts once, and is taken
out as the final's. `from_depth` counts only blocks at or past that position of the chain (the
typed text, past the context's blocks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.core.cache.kv_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
    in_device_cache,
)
from orchestrator.core.cache.resident import BlockHash, salt_of


@dataclass(frozen=True)
class Final:
    """What a final request of a salt asked and found: prompt, cached and answer tokens."""

    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int


@dataclass
class StoredBlocks:
    """Blocks vLLM stored, by salt and position in the chain (pure: events in, counts out)."""

    by_salt: dict[str, Counter[int]] = field(default_factory=dict)  # salt -> depth -> blocks
    _chain: dict[BlockHash, tuple[str, int]] = field(default_factory=dict)  # hash -> salt, depth
    _resident: set[BlockHash] = field(default_factory=set)

    def apply(self, batch: KVEventBatch) -> None:
        for event in batch.events:
            if isinstance(event, AllBlocksCleared):
                self._resident.clear()  # the counts stay: that work was done
            elif not in_device_cache(event):
                continue
            elif isinstance(event, BlockStored):
                self.stored(event)
            elif isinstance(event, BlockRemoved):
                self._resident.difference_update(event.block_hashes)

    def stored(self, event: BlockStored) -> None:
        parent = event.parent_block_hash
        known = self._chain.get(parent) if parent is not None else None
        salt, depth = (known[0], known[1] + 1) if known else (None, 0)
        for i, block in enumerate(event.block_hashes):
            if parent is None and i == 0:
                keys = event.extra_keys[0] if event.extra_keys else None
                salt = salt_of(keys)
            if salt is None:
                return  # a chain that started before we listened, or with no salt
            self._chain[block] = (salt, depth)
            if block not in self._resident:  # computed, not reused
                self._resident.add(block)
                self.by_salt.setdefault(salt, Counter())[depth] += 1
            depth += 1

    def warm_tokens(
        self, salts: Iterable[str], finals: list[Final], block_size: int, from_depth: int = 0
    ) -> int:
        """Tokens the engine computed in full blocks under `salts` (at `from_depth` or past it)
        beyond what `finals` computed themselves."""
        stored = sum(
            count
            for salt in set(salts)
            for depth, count in self.by_salt.get(salt, Counter()).items()
            if depth >= from_depth
        )
        own = sum(final_blocks(final, block_size, from_depth) for final in finals)
        return (stored - own) * block_size


def final_blocks(final: Final, block_size: int, from_depth: int = 0) -> int:
    """Full blocks a final request computed and cached itself, at `from_depth` or past it."""
    computed_end = (final.prompt_tokens + final.completion_tokens - 1) // block_size
    first = max(final.cached_tokens // block_size, from_depth)
    return max(0, computed_end - first)
