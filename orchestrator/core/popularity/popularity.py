"""Prefix popularity: the rows of what was asked, per tenant, and the index built from them.

Final requests and landed warm-ups are recorded (one-line hooks in `session.py` and
`web/warm_api.py`) as popularity rows: the cache scope (tenant, namespace), the kind, the
chain of block hashes of the prompt's reusable full blocks, and their token ids (what a
re-warm sends: no text). Each row goes at once into the in-memory index (`index.py`) and,
batched, into a `PopularityStore`: PostgreSQL in the service (`orchestrator/popularity/
store.py`), a list in tests and in a deployment without a database. At start the index is
rebuilt from the stored rows within the retention; a tenant in `popularity_opt_out_tenants`
is never recorded and its rows are deleted.

The cache salt is not stored: it is derived again from the scope when the rows are used, so
rows recorded under one server secret never warm under a salt they did not come from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from orchestrator.core.popularity.index import (
    Context,
    PopularityIndex,
    Scope,
    Selected,
    block_chain,
    reusable_prefix,
    within_budget,
)
from orchestrator.errors import ServiceError
from orchestrator.settings import Settings

log = logging.getLogger(__name__)
PopularityKind = Literal["final", "warm"]
FLUSH_S = 1.0
PRUNE_EVERY_S = 3600.0
MAX_PENDING = 10_000  # rows waiting for the store; beyond, the oldest are dropped (logged)


@dataclass(frozen=True)
class PopularityRow:
    scope: Scope
    kind: PopularityKind
    block_size: int
    chain: tuple[bytes, ...]
    tokens: tuple[int, ...]  # the chain's full blocks
    at: float  # Unix seconds
    label: str | None = None  # the named context (a text-to-SQL database), if any


class PopularityStore(Protocol):
    async def start(self) -> None: ...

    async def append(self, rows: Sequence[PopularityRow]) -> None: ...

    async def load(self, since: float) -> list[PopularityRow]: ...

    async def prune(self, before: float) -> int:
        """Delete rows older than `before`; how many."""
        ...

    async def forget(self, tenants: Sequence[str]) -> int:
        """Delete every row of `tenants`; how many."""
        ...


@dataclass
class MemoryPopularityStore:
    """A `PopularityStore` in a list: tests, and a service without a database."""

    rows: list[PopularityRow] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def append(self, rows: Sequence[PopularityRow]) -> None:
        self.rows.extend(rows)

    async def load(self, since: float) -> list[PopularityRow]:
        return [row for row in self.rows if row.at >= since]

    async def prune(self, before: float) -> int:
        kept = [row for row in self.rows if row.at >= before]
        dropped, self.rows = len(self.rows) - len(kept), kept
        return dropped

    async def forget(self, tenants: Sequence[str]) -> int:
        kept = [row for row in self.rows if row.scope.tenant not in tenants]
        dropped, self.rows = len(self.rows) - len(kept), kept
        return dropped


@dataclass(frozen=True)
class PopularityPolicy:
    half_life_s: float = 3600.0
    warm_weight: float = 0.25
    retention_s: float = 7 * 86400.0
    opt_out: frozenset[str] = frozenset()
    top_k: int = 8
    min_score: float = 0.5
    budget_tokens: int = 60_000

    @classmethod
    def of(cls, settings: Settings) -> PopularityPolicy:
        return cls(
            half_life_s=settings.popularity_half_life_s,
            warm_weight=settings.popularity_warm_weight,
            retention_s=settings.popularity_retention_hours * 3600.0,
            opt_out=frozenset(settings.popularity_opt_out_tenants),
            top_k=settings.rewarm_top_k,
            min_score=settings.rewarm_min_score,
            budget_tokens=settings.rewarm_budget_tokens,
        )


class Popularity:
    """The recorder and the index (one per block size: a vLLM may come back with another)."""

    def __init__(
        self,
        store: PopularityStore,
        policy: PopularityPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.indexes: dict[int, PopularityIndex] = {}
        self.pending: list[PopularityRow] = []
        self.recorded = 0
        self.store_errors = 0
        self.loaded = 0

    def index(self, block_size: int) -> PopularityIndex:
        index = self.indexes.get(block_size)
        if index is None:
            index = self.indexes[block_size] = PopularityIndex(block_size, self.policy.half_life_s)
        return index

    def record(
        self,
        tenant: str,
        namespace: str | None,
        tokens: Sequence[int],
        block_size: int,
        kind: PopularityKind,
        label: str | None = None,
    ) -> None:
        """A final request of `tokens` was sent, or a warm-up of them landed."""
        if tenant in self.policy.opt_out:
            return
        prefix = reusable_prefix(tokens, block_size)
        if not prefix:
            return  # less than one full block: nothing a cache would keep
        scope = Scope(tenant, namespace or "")
        chain = tuple(block_chain(scope, prefix, block_size))
        row = PopularityRow(scope, kind, block_size, chain, tuple(prefix), self.clock(), label)
        self.add(row)
        self.pending.append(row)
        self.recorded += 1
        if len(self.pending) > MAX_PENDING:
            del self.pending[: len(self.pending) - MAX_PENDING]
            log.warning("the popularity store lags: oldest unsaved rows dropped")

    def add(self, row: PopularityRow) -> None:
        weight = 1.0 if row.kind == "final" else self.policy.warm_weight
        if weight > 0:
            index = self.index(row.block_size)
            index.observe(row.scope, row.chain, row.tokens, row.at, weight, row.label)

    async def load(self) -> None:
        """Start the store, delete what retention and the opt-outs say, rebuild the index."""
        await self.store.start()
        now = self.clock()
        if self.policy.opt_out:
            await self.store.forget(sorted(self.policy.opt_out))
        await self.store.prune(now - self.policy.retention_s)
        rows = await self.store.load(now - self.policy.retention_s)
        for row in sorted(rows, key=lambda r: r.at):
            if row.scope.tenant not in self.policy.opt_out:
                self.add(row)
        self.loaded = len(rows)

    async def flush(self) -> None:
        rows, self.pending = self.pending, []
        if not rows:
            return
        try:
            await self.store.append(rows)
        except ServiceError as error:
            self.store_errors += 1
            log.warning("popularity: %d rows not saved: %s", len(rows), error.message)

    async def run(self) -> None:
        """Until cancelled: save recorded rows every second, apply the retention hourly."""
        last_prune = self.clock()
        try:
            while True:
                await asyncio.sleep(FLUSH_S)
                await self.flush()
                if self.clock() - last_prune >= PRUNE_EVERY_S:
                    last_prune = self.clock()
                    await self.prune()
        finally:
            await asyncio.shield(self.flush())

    async def forget(self, tenant: str) -> int:
        """Forget everything recorded of `tenant`: its stored rows, its rows not saved yet and
        its part of the index; how many rows went."""
        unsaved = [row for row in self.pending if row.scope.tenant == tenant]
        self.pending = [row for row in self.pending if row.scope.tenant != tenant]
        for index in self.indexes.values():
            index.forget(tenant)
        return len(unsaved) + await self.store.forget([tenant])

    async def prune(self) -> None:
        now = self.clock()
        try:
            await self.store.prune(now - self.policy.retention_s)
        except ServiceError as error:
            log.warning("popularity: retention not applied: %s", error.message)
        for index in self.indexes.values():
            index.prune(now, min_score=1e-3)

    def top(self, block_size: int, k: int, tenant: str | None = None) -> list[Context]:
        """The `k` best contexts of each scope (of `tenant`), best first."""
        index = self.indexes.get(block_size)
        if index is None:
            return []
        return index.top(self.clock(), k, tenant=tenant, min_score=self.policy.min_score)

    def plan(self, block_size: int, tenant: str | None = None) -> list[Selected]:
        """What a re-warm warms: the top contexts of every scope (of `tenant`) within the
        token budget."""
        ranked = self.top(block_size, self.policy.top_k, tenant)
        return within_budget(ranked, self.policy.budget_tokens)

    def hints(self, tenant: str, namespace: str | None, block_size: int, k: int) -> list[Context]:
        """`tenant`'s own top contexts in one namespace (never another tenant's)."""
        scope = Scope(tenant, namespace or "")
        return [c for c in self.top(block_size, k, tenant) if c.scope == scope][:k]

    def wanted(self) -> bool:
        """Is there anything to re-warm should vLLM restart?"""
        return self.policy.top_k > 0 and any(index.roots for index in self.indexes.values())

    def status(self) -> dict[str, int]:
        nodes = sum(index.nodes for index in self.indexes.values())
        scopes = sum(len(index.roots) for index in self.indexes.values())
        return {
            "recorded": self.recorded,
            "loaded": self.loaded,
            "scopes": scopes,
            "nodes": nodes,
            "unsaved": len(self.pending),
            "store_errors": self.store_errors,
        }
