"""Where named prefix states are kept: the interface, and the in-memory store.

Every lookup is by tenant and id together, so another tenant's id is as missing as an id that
never existed: the same code path, the same answer. The PostgreSQL store
(`web/state_store_pg.py`) keeps them across restarts of the orchestrator.
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.core.states.state import State


class StateStore(Protocol):
    async def start(self) -> None:
        """Make the store ready (create its table)."""

    async def put(self, state: State) -> None:
        """Insert `state`, or replace the one of the same id."""

    async def get(self, tenant: str, state_id: str, now: float) -> State | None:
        """The tenant's live state of this id; None for a missing, expired or foreign one."""

    async def of_tenant(self, tenant: str, now: float) -> list[State]:
        """The tenant's live states, oldest first."""

    async def delete(self, tenant: str, state_id: str) -> bool:
        """Delete the tenant's state of this id; False when it has none."""

    async def live(self, now: float) -> list[State]:
        """Every tenant's live states (for the keeper)."""

    async def purge(self, now: float) -> int:
        """Delete the expired states; how many."""


class MemoryStates:
    """States in a dict, for tests and deployments without a database."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], State] = {}

    async def start(self) -> None:
        return None

    async def put(self, state: State) -> None:
        self._states[(state.tenant, state.id)] = state

    async def get(self, tenant: str, state_id: str, now: float) -> State | None:
        state = self._states.get((tenant, state_id))
        return state if state is not None and state.live(now) else None

    async def of_tenant(self, tenant: str, now: float) -> list[State]:
        found = [s for s in self._states.values() if s.tenant == tenant and s.live(now)]
        return sorted(found, key=lambda state: state.created_at)

    async def delete(self, tenant: str, state_id: str) -> bool:
        return self._states.pop((tenant, state_id), None) is not None

    async def live(self, now: float) -> list[State]:
        return sorted((s for s in self._states.values() if s.live(now)), key=lambda s: s.created_at)

    async def purge(self, now: float) -> int:
        expired = [key for key, state in self._states.items() if not state.live(now)]
        for key in expired:
            del self._states[key]
        return len(expired)
