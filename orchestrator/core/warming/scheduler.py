"""The warm-up scheduler: how much warm-up work is inside the engine at any instant.

vLLM serves running requests before waiting ones, and its priority orders only its waiting
queue: a running warm-up keeps its chunk of every engine step while a final request waits.
So the bound is ours. Every warm-up goes out as block-aligned pieces of a few hundred
uncached tokens (`planner.split_pieces`), and every piece, whatever sent it (keystrokes,
pauses, re-warms after eviction, `POST /v1/warm`, the state keeper, the start-up re-warm),
passes here first:

- at most `limit` pieces run at once (per engine: times the replicas behind a router), so
  that their chunks never fill an engine step; while a final request waits for its first
  token the bound drops to `limit_while_finals` (at least 1: nobody's warm-ups stop), for
  at most `final_room_s` per final, so a final shares each step with at most that many
  chunks, and a non-streamed final cannot hold warm-ups for its whole answer;
- the rest queue by class (interactive before keep-alive before background), and within a
  class round robin across tenants, then across owners (sessions) of a tenant: each owner
  has at most one piece waiting, so a tenant with many sessions gets no more turns;
- background pieces (the start-up re-warm) run one at a time, only when nothing else waits
  and no final is before its first token;
- a tenant has at most `max_finals_per_tenant` final requests at once (RateLimited beyond).

A final never cancels a piece in flight: aborted pieces earn nothing, and holding everyone's
warm-ups for each final made the next finals colder (README, "Warm-ups under load").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import IntEnum

from orchestrator.errors import RateLimited
from orchestrator.settings import Settings


class WarmClass(IntEnum):
    """Who a piece is for, in the order the queue serves them."""

    INTERACTIVE = 0  # a session's typing, pauses and re-warms; POST /v1/warm
    KEEP = 1  # the state keeper's touches of named prefix states
    BACKGROUND = 2  # the start-up re-warm of popular contexts


def pieces_in_flight(step_tokens: int, chunk_tokens: int | None, piece_tokens: int) -> int:
    """How many warm-up pieces may run at once so that their chunks fill at most half of an
    engine step: vLLM gives each running prefill at most `chunk_tokens` a step (its
    `--long-prefill-token-threshold`; None or 0: no cap) out of `step_tokens`
    (`--max-num-batched-tokens`)."""
    per_step = min(piece_tokens, chunk_tokens) if chunk_tokens else piece_tokens
    return max(1, (step_tokens // 2) // max(1, per_step))


@dataclass
class Piece:
    """One warm-up piece admitted into the engine (the handle its sender holds)."""

    owner: str
    tenant: str
    klass: WarmClass
    started: float = 0.0


@dataclass
class Counts:
    sent: int = 0  # pieces admitted (handed to vLLM)
    finals: int = 0  # final requests started
    final_overlap_s: float = 0.0  # finals' time before first token with a piece in flight


@dataclass
class _Waiter:
    owner: str
    tenant: str
    klass: WarmClass
    turn: asyncio.Future[int]  # the key of its place in `running`, once it has one


@dataclass
class _ClassQueue:
    """Round robin across tenants, first come within a tenant (one waiter per owner)."""

    by_tenant: dict[str, deque[_Waiter]] = field(default_factory=dict)
    rotation: deque[str] = field(default_factory=deque)

    def __len__(self) -> int:
        return sum(len(waiters) for waiters in self.by_tenant.values())

    def push(self, waiter: _Waiter) -> None:
        if waiter.tenant not in self.by_tenant:
            self.by_tenant[waiter.tenant] = deque()
            self.rotation.append(waiter.tenant)
        self.by_tenant[waiter.tenant].append(waiter)

    def pop(self) -> _Waiter | None:
        while self.rotation:
            tenant = self.rotation.popleft()
            waiters = self.by_tenant[tenant]
            while waiters and waiters[0].turn.done():  # cancelled while waiting
                waiters.popleft()
            if not waiters:
                del self.by_tenant[tenant]
                continue
            waiter = waiters.popleft()
            if waiters:
                self.rotation.append(tenant)
            else:
                del self.by_tenant[tenant]
            return waiter
        return None


class FinalTicket:
    """A final request in progress: `first_token()` when its first token arrives (or it ends
    without one), `close()` when it ends (it also says first_token)."""

    def __init__(self, scheduler: WarmScheduler, tenant: str) -> None:
        self.scheduler = scheduler
        self.tenant = tenant
        self.started_busy = scheduler.busy_s()
        self.before_first_token = True
        self.holds_room = True  # counted in the scheduler's `waiting_finals`
        self.open = True
        self.room: asyncio.TimerHandle | None = None

    def first_token(self) -> None:
        if self.before_first_token:
            self.before_first_token = False
            self.scheduler.final_first_token(self)
            self.release_room()

    def release_room(self) -> None:
        """First token, or `final_room_s` spent: warm-ups get their whole bound back."""
        if self.room is not None:
            self.room.cancel()
            self.room = None
        if self.holds_room:
            self.holds_room = False
            self.scheduler.final_room_released()

    def close(self) -> None:
        self.first_token()
        if self.open:
            self.open = False
            self.scheduler.final_closed(self)


class WarmScheduler:
    def __init__(
        self,
        limit: int = 2,
        limit_while_finals: int = 1,
        final_room_s: float = 5.0,
        max_finals_per_tenant: int = 16,
        on_final_waited: Callable[[float], None] = lambda seconds: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or limit_while_finals < 1:
            raise ValueError("the bounds on pieces in flight must be at least 1")
        self.limit = limit
        self.limit_while_finals = min(limit, limit_while_finals)
        self.final_room_s = final_room_s
        self.max_finals_per_tenant = max_finals_per_tenant
        self.on_final_waited = on_final_waited  # a final's time before first token with pieces
        self.clock = clock
        self.counts = Counts()
        self.running: dict[int, Piece] = {}
        self.queues = {klass: _ClassQueue() for klass in WarmClass}
        self.waiting_finals = 0  # before their first token, within their room
        self.finals_by_tenant: dict[str, int] = {}
        self.numbers = itertools.count()
        self._busy_total = 0.0
        self._busy_since: float | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, on_final_waited: Callable[[float], None] = lambda s: None
    ) -> WarmScheduler:
        """The bounds for the engine the settings describe, times its replicas."""
        engines = max(1, len(settings.vllm_replica_urls))
        per_engine = settings.warm_pieces_in_flight or pieces_in_flight(
            settings.engine_step_tokens, settings.engine_chunk_tokens, settings.warm_piece_tokens
        )
        return cls(
            limit=per_engine * engines,
            limit_while_finals=min(per_engine, settings.warm_pieces_while_finals) * engines,
            final_room_s=settings.final_room_s,
            max_finals_per_tenant=settings.max_finals_per_tenant,
            on_final_waited=on_final_waited,
        )

    # -- figures ---------------------------------------------------------------------------

    def busy_s(self) -> float:
        """Seconds with at least one piece in flight, since the start."""
        open_s = 0.0 if self._busy_since is None else self.clock() - self._busy_since
        return self._busy_total + open_s

    def queued(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    def queued_up_to(self, klass: WarmClass) -> int:
        """Waiters of `klass` and of the classes served before it."""
        return sum(len(self.queues[k]) for k in WarmClass if k <= klass)

    def status(self) -> dict[str, object]:
        return {
            "pieces_in_flight": len(self.running),
            "limit": self.current_limit(),
            "queued": self.queued(),
            "finals_before_first_token": self.waiting_finals,
            "pieces_sent": self.counts.sent,
            "finals": self.counts.finals,
            "final_overlap_s": round(self.counts.final_overlap_s, 3),
        }

    def current_limit(self) -> int:
        return self.limit_while_finals if self.waiting_finals else self.limit

    # -- pieces ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def piece(
        self,
        owner: str,
        tenant: str,
        klass: WarmClass = WarmClass.INTERACTIVE,
    ) -> AsyncIterator[Piece]:
        """Wait for this piece's turn, hold its place in the engine while the body sends it."""
        key = await self.turn(owner, tenant, klass)
        piece = self.running[key] = Piece(owner, tenant, klass, self.clock())
        try:
            yield piece
        finally:
            self.stop(key)

    async def turn(self, owner: str, tenant: str, klass: WarmClass) -> int:
        """Wait until this piece may start; the key of its place in `running`."""
        if self.may_start(klass) and not self.queued_up_to(klass):
            return self.reserve(Piece(owner, tenant, klass, self.clock()))
        turn: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.queues[klass].push(_Waiter(owner, tenant, klass, turn))
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted as we were cancelled
                self.stop(turn.result())
            raise

    def may_start(self, klass: WarmClass) -> bool:
        if len(self.running) >= self.current_limit():
            return False
        if klass is WarmClass.BACKGROUND:
            busy = self.waiting_finals or any(p.klass is klass for p in self.running.values())
            others = len(self.queues[WarmClass.INTERACTIVE]) + len(self.queues[WarmClass.KEEP])
            return not busy and not others
        return True

    def pump(self) -> None:
        """Give turns to waiters while there is room, class by class."""
        for klass in WarmClass:
            while self.may_start(klass):
                waiter = self.queues[klass].pop()
                if waiter is None:
                    break
                held = Piece(waiter.owner, waiter.tenant, klass, self.clock())
                waiter.turn.set_result(self.reserve(held))  # counted now: the bound holds

    def reserve(self, piece: Piece) -> int:
        if not self.running:
            self._busy_since = self.clock()
        key = next(self.numbers)
        self.running[key] = piece
        self.counts.sent += 1
        return key

    def stop(self, key: int) -> None:
        self.running.pop(key, None)
        if not self.running and self._busy_since is not None:
            self._busy_total += self.clock() - self._busy_since
            self._busy_since = None
        self.pump()

    # -- finals ----------------------------------------------------------------------------

    def final_started(self, owner: str | None, tenant: str) -> FinalTicket:
        """A final request of `owner` (a session, or None) for `tenant` is about to be sent;
        close the ticket when it ends. RateLimited beyond the tenant's finals at once."""
        if self.finals_by_tenant.get(tenant, 0) >= self.max_finals_per_tenant:
            raise RateLimited(
                f"{self.max_finals_per_tenant} requests of this tenant are already being "
                "answered; wait for one to finish"
            )
        self.finals_by_tenant[tenant] = self.finals_by_tenant.get(tenant, 0) + 1
        self.counts.finals += 1
        ticket = FinalTicket(self, tenant)
        self.waiting_finals += 1
        loop = asyncio.get_running_loop()
        ticket.room = loop.call_later(self.final_room_s, ticket.release_room)
        return ticket

    def final_first_token(self, ticket: FinalTicket) -> None:
        overlap = self.busy_s() - ticket.started_busy
        self.counts.final_overlap_s += overlap
        self.on_final_waited(overlap)

    def final_room_released(self) -> None:
        self.waiting_finals = max(0, self.waiting_finals - 1)
        self.pump()

    def final_closed(self, ticket: FinalTicket) -> None:
        left = self.finals_by_tenant.get(ticket.tenant, 1) - 1
        if left > 0:
            self.finals_by_tenant[ticket.tenant] = left
        else:
            self.finals_by_tenant.pop(ticket.tenant, None)
