"""Keeps live states resident in vLLM's prefix cache until their TTL ends.

One task per application. A state is warmed again (its full blocks and one token, at the
warm-up priority, through the sessions' dispatcher and its bounds):

- every `interval_s`, all live states: a warm-up of cached blocks makes them the most recently
  used, so vLLM's LRU evicts other blocks first (it costs vLLM one token per state);
- at once, the states whose chain vLLM's KV events show evicted (when the feed is live);
- at once, all live states after vLLM came back (a restarted vLLM has an empty cache) and
  when the keeper starts (an orchestrator restart, the states read from the store).

Expired states are deleted from the store at each round. Budgets bound what is kept: no
tenant holds more than its states and tokens allow (`states.check_budget` at creation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from orchestrator.core.cache.resident import Eviction, ResidentBlocks
from orchestrator.core.engine.vllm_client import EngineFacts
from orchestrator.core.states.state import State, full_block_tokens, warm_prefix
from orchestrator.core.states.store import StateStore
from orchestrator.core.warming.dispatch import WarmDispatcher
from orchestrator.core.warming.scheduler import WarmClass
from orchestrator.errors import RateLimited, ServiceError

log = logging.getLogger(__name__)
RETRY_S = 1.0  # a warm-up not admitted (the bound on warm-ups in flight) is tried again


class StateKeeper:
    def __init__(
        self,
        store: StateStore,
        dispatcher: WarmDispatcher,
        facts: Callable[[], Awaitable[EngineFacts]],
        interval_s: float,
        route_of: Callable[[str], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.facts = facts
        self.route_of = route_of  # a tenant's routing key: its states live on one replica
        self.interval_s = interval_s
        self.clock = clock
        self.touches = 0  # warm-ups of states the keeper sent that landed
        self._live: dict[str, State] = {}
        self._warmed: dict[str, int] = {}  # state id -> tokens its last warm-up left cached
        self._due: set[str] = set()
        self._wake = asyncio.Event()
        self._block_size: int | None = None

    # -- what the API and the services tell it --------------------------------------------

    def has_live(self) -> bool:
        now = self.clock()
        return any(state.live(now) for state in self._live.values())

    def live_states(self) -> list[State]:
        now = self.clock()
        return [state for state in self._live.values() if state.live(now)]

    def added(self, state: State, warmed_tokens: int, block_size: int) -> None:
        self._block_size = block_size
        self._live[state.id] = state
        self._warmed[state.id] = warmed_tokens

    def removed(self, state_id: str) -> None:
        self._live.pop(state_id, None)
        self._warmed.pop(state_id, None)
        self._due.discard(state_id)

    def warmed_tokens(self, state_id: str) -> int:
        """The keeper's belief: tokens of the state its last warm-up left cached."""
        return self._warmed.get(state_id, 0)

    def engine_recovered(self) -> None:
        """vLLM answers again: its cache may be empty; warm every live state at once."""
        self._warmed.clear()
        self._due |= set(self._live)
        self._wake.set()

    def on_eviction(self, eviction: Eviction, index: ResidentBlocks) -> None:
        """vLLM evicted blocks: the states whose chain was cut are warmed again at once."""
        block = self._block_size
        for state in self._live.values():
            if state.salt not in eviction.salts:
                continue
            if block is None or index.cut_at(state.salt, state.tokens, block, eviction) is not None:
                self._due.add(state.id)
        if self._due:
            self._wake.set()

    # -- the task -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled."""
        await self.load()
        next_round = self.clock()
        while True:
            wake_at = next_round if not self._due else min(next_round, self.clock() + RETRY_S)
            timeout = max(0.0, wake_at - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if self.clock() >= next_round:
                await self.sweep()
                self._due |= set(self._live)
                next_round = self.clock() + self.interval_s
            await self.warm_due()

    async def load(self) -> None:
        """Read the live states from the store (they may predate this process)."""
        try:
            states = await self.store.live(self.clock())
        except ServiceError as error:
            log.warning("cannot read the states to keep: %s", error.message)
            return
        for state in states:
            self._live.setdefault(state.id, state)

    async def sweep(self) -> None:
        """Forget expired states, here and in the store."""
        now = self.clock()
        for state_id in [i for i, state in self._live.items() if not state.live(now)]:
            self.removed(state_id)
        try:
            await self.store.purge(now)
        except ServiceError as error:
            log.warning("cannot delete the expired states: %s", error.message)

    async def warm_due(self) -> None:
        """Warm the due states, one at a time (they queue behind finals and sessions)."""
        while self._due:
            state = self._live.get(self._due.pop())
            if state is None or not state.live(self.clock()):
                continue
            try:
                await self.touch(state)
            except RateLimited:
                self._due.add(state.id)  # again in RETRY_S
                return

    async def touch(self, state: State) -> None:
        """Warm `state` again; RateLimited when the warm-up is not admitted now."""
        try:
            facts = await self.facts()
            self._block_size = facts.block_size
            warmed = warm_prefix(state.tokens, facts.block_size)
            if warmed is None:
                return
            await self.dispatcher.warm_once(
                facts.model,
                warmed,
                state.salt,
                self.route_of(state.tenant),
                tenant=state.tenant,
                klass=WarmClass.KEEP,
                block_size=facts.block_size,
            )
        except RateLimited:
            raise
        except ServiceError as error:
            log.info("state %s not warmed again: %s", state.id, error.message)
            return
        self.touches += 1
        if state.id in self._live:
            self._warmed[state.id] = full_block_tokens(state.tokens, facts.block_size)
