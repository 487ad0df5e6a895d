"""What is hot: a popularity index over block-hash prefixes of the prompts seen, per cache scope.

Pure (no I/O, no clock of its own: every call takes `now` in seconds). A prompt is cut into
full KV blocks; each block gets a hash chained on its parent's, rooted in the prompt's scope
(the tenant and the cache namespace: what its `cache_salt` is derived from), so equal chains
mean equal token prefixes in the same cache, and chains of different scopes never meet. These
are our own hashes, not vLLM's: they stay valid across vLLM restarts and versions.

Each scope has a trie of chain prefixes. Every recorded prompt adds its weight to each node on
its path, as an exponentially decayed count: a node keeps a score and the time it was last
updated, and is decayed lazily, `score * 2 ** (-(now - then) / half_life)`. A node carries the
tokens of its block, so the path to it gives back the token ids to warm.

What the index hands out are *contexts*: the nodes where requests part ways (a branch point)
or end (a leaf), since the longest prefix that many requests share is what a re-warm should
cache; a node whose traffic all continues into one child is covered by that child. Contexts
are ranked by the expected prefill they save, score x tokens of the prefix.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

HASH_BYTES = 16
COVERED = 1e-9  # a child carrying all but this fraction of a node's score covers it


@dataclass(frozen=True, order=True)
class Scope:
    """One cache: a tenant's shared one (namespace "") or a namespace of its own."""

    tenant: str
    namespace: str = ""

    def root(self) -> bytes:
        key = f"tenant:{self.tenant}\x00namespace:{self.namespace}"
        return hashlib.sha256(key.encode()).digest()


def block_chain(scope: Scope, tokens: Sequence[int], block_size: int) -> list[bytes]:
    """The hash of every full block of `tokens`, each chained on its parent, rooted in `scope`."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    parent, chain = scope.root(), []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = tokens[start : start + block_size]
        digest = hashlib.sha256(parent + b"".join(t.to_bytes(4, "little") for t in block))
        parent = digest.digest()[:HASH_BYTES]
        chain.append(parent)
    return chain


def reusable_prefix(tokens: Sequence[int], block_size: int) -> list[int]:
    """The full blocks a request of `tokens` leaves reusable (floor((N-1)/B): the last prompt
    token is always recomputed): what is worth remembering of it."""
    blocks = (len(tokens) - 1) // block_size if len(tokens) > 1 else 0
    return list(tokens[: blocks * block_size])


@dataclass
class Node:
    block: tuple[int, ...]  # this block's tokens
    depth: int  # blocks from the root to here, this one included
    score: float = 0.0
    updated: float = 0.0
    label: str | None = None  # the named context of the latest request through here
    children: dict[bytes, Node] = field(default_factory=dict)

    def value(self, now: float, half_life_s: float) -> float:
        return self.score * math.pow(2.0, -max(0.0, now - self.updated) / half_life_s)

    def add(self, weight: float, now: float, half_life_s: float) -> None:
        self.score = self.value(now, half_life_s) + weight
        self.updated = max(self.updated, now)


@dataclass(frozen=True)
class Context:
    """A prefix the index hands out: its scope, chain, tokens and decayed score."""

    scope: Scope
    chain: tuple[bytes, ...]
    tokens: tuple[int, ...]  # its full blocks
    score: float
    label: str | None
    last_seen: float

    @property
    def expected_saved(self) -> float:
        """Expected prefill saved by keeping it cached: score x its tokens."""
        return self.score * len(self.tokens)

    def warm_up(self) -> list[int]:
        """The warm-up prompt: its blocks and one token more, so that a `max_tokens=1`
        request of it leaves every one of them (that token's partial block is not cached)."""
        return [*self.tokens, self.tokens[-1]]

    def covers(self, other: Context) -> bool:
        """`other` is a prefix of this one (same scope): warming this warms it."""
        return self.scope == other.scope and self.chain[: len(other.chain)] == other.chain


@dataclass(frozen=True)
class Selected:
    """A context chosen to warm, and the tokens it adds over the contexts chosen before it."""

    context: Context
    new_tokens: int


class PopularityIndex:
    """Decayed counts over block-hash prefixes, one trie per scope; see the module docstring."""

    def __init__(self, block_size: int, half_life_s: float, max_nodes: int = 200_000) -> None:
        if half_life_s <= 0:
            raise ValueError(f"half_life_s must be > 0, got {half_life_s}")
        self.block_size = block_size
        self.half_life_s = half_life_s
        self.max_nodes = max_nodes
        self.roots: dict[Scope, dict[bytes, Node]] = {}
        self.nodes = 0

    def observe(
        self,
        scope: Scope,
        chain: Sequence[bytes],
        tokens: Sequence[int],
        now: float,
        weight: float = 1.0,
        label: str | None = None,
    ) -> None:
        """A request of `tokens` (its full blocks hashed as `chain`) was seen at `now`."""
        b = self.block_size
        if len(tokens) < len(chain) * b:
            raise ValueError(f"{len(chain)} blocks need {len(chain) * b} tokens, got {len(tokens)}")
        children = self.roots.setdefault(scope, {})
        for depth, block_hash in enumerate(chain, start=1):
            node = children.get(block_hash)
            if node is None:
                block = tuple(tokens[(depth - 1) * b : depth * b])
                node = children[block_hash] = Node(block, depth)
                self.nodes += 1
            node.add(weight, now, self.half_life_s)
            if label is not None:
                node.label = label
            children = node.children
        if self.nodes > self.max_nodes:
            self.prune(now)

    def prune(self, now: float, min_score: float | None = None) -> None:
        """Drop the subtrees whose decayed score fell below `min_score` (by default, the one
        that keeps the index under `max_nodes`: the coldest first)."""
        if min_score is None:
            scores = sorted(n.value(now, self.half_life_s) for _, n in self._walk())
            over = len(scores) - self.max_nodes * 3 // 4
            min_score = scores[over] if over > 0 else 0.0
        for scope in list(self.roots):
            self._prune(self.roots[scope], now, min_score)
            if not self.roots[scope]:
                del self.roots[scope]

    def _prune(self, children: dict[bytes, Node], now: float, min_score: float) -> None:
        for key in list(children):
            node = children[key]
            if node.value(now, self.half_life_s) < min_score:
                self.nodes -= 1 + sum(1 for _ in _subtree(node))
                del children[key]
            else:
                self._prune(node.children, now, min_score)

    def forget(self, tenant: str) -> None:
        """Drop everything of `tenant` (it opted out)."""
        for scope in [s for s in self.roots if s.tenant == tenant]:
            self.nodes -= sum(1 + sum(1 for _ in _subtree(n)) for n in self.roots[scope].values())
            del self.roots[scope]

    def scopes(self, tenant: str | None = None) -> list[Scope]:
        return sorted(s for s in self.roots if tenant is None or s.tenant == tenant)

    def contexts(self, scope: Scope, now: float, min_score: float = 0.0) -> list[Context]:
        """The contexts of `scope` (branch points and leaves) scoring at least `min_score`,
        best first by expected prefill saved."""
        found: list[Context] = []
        stack: list[tuple[Node, tuple[bytes, ...], tuple[int, ...]]] = [
            (node, (key,), node.block) for key, node in self.roots.get(scope, {}).items()
        ]
        while stack:
            node, chain, tokens = stack.pop()
            score = node.value(now, self.half_life_s)
            if score < min_score or score <= 0:
                continue  # children score no more than their parent
            best_child = max(
                (c.value(now, self.half_life_s) for c in node.children.values()), default=0.0
            )
            if best_child < score * (1 - COVERED):
                found.append(Context(scope, chain, tokens, score, node.label, node.updated))
            for key, child in node.children.items():
                stack.append((child, (*chain, key), tokens + child.block))
        return sorted(found, key=lambda c: (-c.expected_saved, c.chain))

    def top(
        self, now: float, k: int, *, tenant: str | None = None, min_score: float = 0.0
    ) -> list[Context]:
        """The `k` best contexts of each scope (of `tenant`, or of all), best first."""
        ranked: list[Context] = []
        for scope in self.scopes(tenant):
            ranked += self.contexts(scope, now, min_score)[:k]
        return sorted(ranked, key=lambda c: (-c.expected_saved, c.scope, c.chain))

    def _walk(self) -> Iterable[tuple[Scope, Node]]:
        for scope, children in self.roots.items():
            for node in children.values():
                yield scope, node
                yield from ((scope, n) for n in _subtree(node))


def _subtree(node: Node) -> Iterable[Node]:
    stack = list(node.children.values())
    while stack:
        n = stack.pop()
        yield n
        stack.extend(n.children.values())


def within_budget(ranked: Iterable[Context], max_tokens: int) -> list[Selected]:
    """Contexts in rank order while their new tokens fit in `max_tokens`: a context already
    covered by a chosen one adds nothing and is skipped; one under a chosen one costs only the
    blocks past it. A context that does not fit is passed over for smaller ones after it."""
    chosen: list[Selected] = []
    spent = 0
    for context in ranked:
        if any(s.context.covers(context) for s in chosen):
            continue
        shared = max(
            (len(s.context.tokens) for s in chosen if context.covers(s.context)), default=0
        )
        new = len(context.tokens) - shared
        if spent + new > max_tokens:
            continue
        chosen.append(Selected(context, new))
        spent += new
    return chosen
