"""The live sessions by id, bounded in all and per tenant."""

from __future__ import annotations

from collections import Counter
from typing import Generic, Protocol, TypeVar

from orchestrator.errors import RateLimited


class Member(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def tenant(self) -> str: ...


M = TypeVar("M", bound=Member)


class SessionRegistry(Generic[M]):
    """Sessions by id; `admit` refuses one over the bounds with RateLimited."""

    def __init__(self, max_sessions: int, max_per_tenant: int) -> None:
        self.max_sessions = max_sessions
        self.max_per_tenant = max_per_tenant
        self.sessions: dict[str, M] = {}
        self.per_tenant: Counter[str] = Counter()

    def admit(self, session: M) -> None:
        if len(self.sessions) >= self.max_sessions:
            raise RateLimited("the server has too many sessions; try again later")
        if self.per_tenant[session.tenant] >= self.max_per_tenant:
            raise RateLimited(f"too many sessions for this tenant (at most {self.max_per_tenant})")
        self.sessions[session.id] = session
        self.per_tenant[session.tenant] += 1

    def remove(self, session: M) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self.per_tenant[session.tenant] -= 1
            if self.per_tenant[session.tenant] <= 0:
                del self.per_tenant[session.tenant]

    def get(self, session_id: str, tenant: str) -> M | None:
        """A tenant only ever finds its own sessions."""
        session = self.sessions.get(session_id)
        return session if session is not None and session.tenant == tenant else None

    def __len__(self) -> int:
        return len(self.sessions)

    def all(self) -> list[M]:
        return list(self.sessions.values())
