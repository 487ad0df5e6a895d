"""Re-warm what is hot when vLLM starts or restarts: its cache is empty, and without this the
first users of every popular context pay its whole prefill.

The plan is the popularity index's top contexts of every cache scope within the token budget
(`Popularity.plan`); each is sent as one warm-up, in pieces, through the sessions' path
(`WarmDispatcher.warm_once`) at the lowest share of the warm-up scheduler (background: one
piece at a time, only while no final waits for its first token and no other warm-up queues)
under the salt of its own scope, until the plan is done or the time budget is spent. A newer
trigger (vLLM restarted again) replaces a re-warm still running. Progress is on `/health`
and `/status` (`rewarm`, with a `message`: "re-warming popular contexts: k of n").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import SecretStr

from orchestrator.core.engine.salt import tenant_salt
from orchestrator.core.engine.vllm_client import EngineFacts, Usage
from orchestrator.core.popularity.popularity import Popularity
from orchestrator.core.warming.dispatch import WarmDispatcher
from orchestrator.core.warming.scheduler import WarmClass
from orchestrator.errors import RateLimited, ServiceError, UpstreamUnavailable

log = logging.getLogger(__name__)
RewarmState = Literal["idle", "running", "done", "waiting_for_engine"]
ADMIT_RETRY_S = 0.2


@dataclass
class RewarmProgress:
    state: RewarmState = "idle"
    reason: str | None = None  # "start", "engine_recovered", "cli"
    planned: int = 0  # contexts in the plan
    warmed: int = 0  # contexts whose warm-up landed
    failed: int = 0
    skipped: int = 0  # left when the time budget ran out
    planned_tokens: int = 0  # new tokens of the plan
    prefill_tokens: int = 0  # tokens vLLM computed for them
    cached_tokens: int = 0  # tokens vLLM already held
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None

    @property
    def message(self) -> str | None:
        """What a person reads: "re-warming popular contexts: k of n" while it runs."""
        if self.state == "running":
            done = self.warmed + self.failed
            return f"re-warming popular contexts: {done} of {self.planned}"
        if self.state == "done" and self.planned:
            return f"re-warmed {self.warmed} of {self.planned} popular contexts"
        return None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message}


class Rewarmer:
    def __init__(
        self,
        popularity: Popularity,
        dispatcher: WarmDispatcher,
        facts: Callable[[], Awaitable[EngineFacts]],
        secret: SecretStr,
        budget_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.popularity = popularity
        self.dispatcher = dispatcher
        self.facts = facts
        self.secret = secret
        self.budget_s = budget_s
        self.clock = clock
        self.progress = RewarmProgress()
        self.task: asyncio.Task[RewarmProgress] | None = None

    def trigger(self, reason: str, tenant: str | None = None) -> asyncio.Task[RewarmProgress]:
        """Start a re-warm now (replacing one still running); of `tenant`'s contexts only, if
        named."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = asyncio.create_task(self.run(reason, tenant))
        return self.task

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await self.task
                except Exception:  # a re-warm that broke must not break the shutdown
                    log.exception("the re-warm failed")

    async def run(self, reason: str, tenant: str | None = None) -> RewarmProgress:
        progress = self.progress = RewarmProgress("running", reason, started_at=self.clock())
        if not self.popularity.wanted():  # nothing to warm: vLLM need not even be asked
            progress.state, progress.finished_at = "done", self.clock()
            return progress
        try:
            facts = await self.facts()
        except ServiceError as error:  # not up yet: the engine watch triggers us when it is
            progress.state, progress.error = "waiting_for_engine", error.message
            progress.finished_at = self.clock()
            return progress
        plan = self.popularity.plan(facts.block_size, tenant)
        progress.planned = len(plan)
        progress.planned_tokens = sum(s.new_tokens for s in plan)
        if plan:
            log.info("re-warming %d contexts (%d tokens)", len(plan), progress.planned_tokens)
        deadline = time.monotonic() + self.budget_s
        try:
            async with asyncio.timeout(self.budget_s):
                for selected in plan:
                    context = selected.context
                    salt = tenant_salt(self.secret, context.scope.tenant, context.scope.namespace)
                    try:
                        usage = await self.warm(
                            facts.model,
                            context.warm_up(),
                            salt,
                            deadline,
                            facts.block_size,
                            context.scope.tenant,
                        )
                    except UpstreamUnavailable as error:
                        progress.state, progress.error = "waiting_for_engine", error.message
                        progress.skipped = progress.planned - progress.warmed - progress.failed
                        return progress
                    except ServiceError as error:
                        progress.failed += 1
                        progress.error = error.message
                        continue
                    progress.warmed += 1
                    progress.prefill_tokens += usage.prompt_tokens - usage.cached_tokens
                    progress.cached_tokens += usage.cached_tokens
        except TimeoutError:
            progress.skipped = progress.planned - progress.warmed - progress.failed
            progress.error = f"time budget of {self.budget_s:g} s spent"
        finally:
            progress.finished_at = self.clock()
        progress.state = "done"
        if plan:
            log.info(
                "re-warm done: %d of %d contexts, %d tokens computed",
                progress.warmed,
                progress.planned,
                progress.prefill_tokens,
            )
        return progress

    async def warm(
        self, model: str, tokens: list[int], salt: str, deadline: float, block: int, tenant: str
    ) -> Usage:
        """One warm-up, in pieces at the lowest share (`WarmClass.BACKGROUND`: one at a time,
        only while no final waits and no other warm-up queues); while the dispatcher does not
        admit it (the bound, a back-off), try again shortly."""
        while True:
            try:
                return await self.dispatcher.warm_once(
                    model,
                    tokens,
                    salt,
                    tenant=tenant,
                    klass=WarmClass.BACKGROUND,
                    block_size=block,
                )
            except RateLimited:
                if time.monotonic() + ADMIT_RETRY_S > deadline:
                    raise
                await asyncio.sleep(max(ADMIT_RETRY_S, self.dispatcher.pause_s()))
