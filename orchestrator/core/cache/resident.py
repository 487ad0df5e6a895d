"""Which KV blocks vLLM holds, as its KV events tell it: an index of resident block chains.

Pure (no I/O): `kv_events.py` feeds it decoded events; sessions ask it how much of a token
prompt is resident under their salt, and whether an eviction cut their warmed chain.

A vLLM block is keyed by its parent block and its tokens (and, for the first block of a
chain, the request's `cache_salt`, which vLLM publishes in the block's `extra_keys`): the
index keeps the same keys, so a walk over a prompt's full blocks finds the resident prefix
without recomputing vLLM's hashes. Prefix caching hits only an unbroken chain from the first
block, so the walk stops at the first block that is not resident.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

BlockHash = bytes | int
BlockKey = tuple[BlockHash | None, str | None, tuple[int, ...]]  # parent, root salt, tokens


@dataclass(frozen=True)
class Block:
    key: BlockKey
    salt: str | None  # the chain's salt (its first block's)


def salt_of(extra_keys: tuple[Any, ...] | None) -> str | None:
    """The cache salt among a first block's extra keys (our requests carry no LoRA or media,
    so it is the one string there)."""
    strings = [key for key in extra_keys or () if isinstance(key, str)]
    return strings[-1] if strings else None


@dataclass
class Eviction:
    """Blocks one batch of events removed, by key, and the salts of their chains."""

    removed: dict[BlockKey, BlockHash] = field(default_factory=dict)
    salts: set[str | None] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.removed)


class ResidentBlocks:
    def __init__(self) -> None:
        self._by_hash: dict[BlockHash, Block] = {}
        self._by_key: dict[BlockKey, BlockHash] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    def stored(
        self,
        hashes: Sequence[BlockHash],
        parent: BlockHash | None,
        token_ids: Sequence[int],
        block_size: int,
        extra_keys: Sequence[tuple[Any, ...] | None] | None,
    ) -> None:
        """A `BlockStored` event: `hashes` chain on from `parent` over `token_ids`."""
        salt = self._by_hash[parent].salt if parent in self._by_hash else None
        for i, block_hash in enumerate(hashes):
            tokens = tuple(token_ids[i * block_size : (i + 1) * block_size])
            if parent is None:
                salt = salt_of(extra_keys[i] if extra_keys and i < len(extra_keys) else None)
            key: BlockKey = (parent, salt if parent is None else None, tokens)
            self._forget(block_hash)
            self._by_hash[block_hash] = Block(key, salt)
            self._by_key[key] = block_hash
            parent = block_hash

    def removed(self, hashes: Iterable[BlockHash], eviction: Eviction) -> None:
        """A `BlockRemoved` event; what it removed is added to `eviction`."""
        for block_hash in hashes:
            block = self._forget(block_hash)
            if block is not None:
                eviction.removed[block.key] = block_hash
                eviction.salts.add(block.salt)

    def clear(self) -> None:
        """`AllBlocksCleared`, or a vLLM that restarted."""
        self._by_hash.clear()
        self._by_key.clear()

    def resident_tokens(self, salt: str | None, tokens: Sequence[int], block_size: int) -> int:
        """Tokens of `tokens` (whole blocks from the start) that vLLM holds under `salt`."""
        return self._walk(salt, tokens, block_size, None)[0]

    def cut_at(
        self, salt: str | None, tokens: Sequence[int], block_size: int, eviction: Eviction
    ) -> int | None:
        """Where `eviction` cut the resident chain of `tokens`: the tokens still resident
        before the first removed block, or None when it did not cut this chain (or the chain
        is not known far enough to tell)."""
        resident, cut = self._walk(salt, tokens, block_size, eviction)
        return resident if cut else None

    def _walk(
        self,
        salt: str | None,
        tokens: Sequence[int],
        block_size: int,
        eviction: Eviction | None,
    ) -> tuple[int, bool]:
        parent: BlockHash | None = None
        for start in range(0, len(tokens) - block_size + 1, block_size):
            block = tuple(tokens[start : start + block_size])
            key: BlockKey = (parent, salt if parent is None else None, block)
            found = self._by_key.get(key)
            if found is None:
                removed = eviction.removed.get(key) if eviction is not None else None
                return start, removed is not None
            parent = found
        return len(tokens) - len(tokens) % block_size, False

    def _forget(self, block_hash: BlockHash) -> Block | None:
        block = self._by_hash.pop(block_hash, None)
        if block is not None and self._by_key.get(block.key) == block_hash:
            del self._by_key[block.key]
        return block
