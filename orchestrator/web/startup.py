"""The application's start-up and shutdown: every service built once, in order, on one
`AsyncExitStack`.

Each step registers how to undo itself the moment it has succeeded, so a failure half-way
(the database, the tokenizer, prefix popularity) releases exactly what was opened before it,
and shutdown releases everything in the reverse order: background tasks first, then the
HTTP client, the log ring, the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.core.answering.final_request import Finals
from orchestrator.core.cache.kv_events import KVEventFeed
from orchestrator.core.cache.resident import ResidentBlocks
from orchestrator.core.cache.rewarm import Rewarmer
from orchestrator.core.engine.prefill_cost import PrefillCost
from orchestrator.core.engine.salt import routing_key
from orchestrator.core.engine.vllm_client import VLLMClient, make_http_client
from orchestrator.core.engine.watch import EngineWatch, stop_task
from orchestrator.core.metrics import Metrics
from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.core.popularity.popularity import (
    MemoryPopularityStore,
    Popularity,
    PopularityPolicy,
    PopularityStore,
)
from orchestrator.core.registry import SessionRegistry
from orchestrator.core.services import EngineFactsCache, EvictionFollower, LiveSession
from orchestrator.core.states.keeper import StateKeeper
from orchestrator.core.states.store import MemoryStates, StateStore
from orchestrator.core.warming.dispatch import WarmDispatcher
from orchestrator.core.warming.gate import WarmupGate
from orchestrator.core.warming.scheduler import WarmScheduler
from orchestrator.db.server import Database
from orchestrator.errors import DatabaseError
from orchestrator.logs import LogRing
from orchestrator.popularity.store import PostgresPopularityStore
from orchestrator.settings import Settings
from orchestrator.text_to_sql.contexts import SqlContexts
from orchestrator.web.observability import MAX_LOG_LINES
from orchestrator.web.services import Services
from orchestrator.web.state_store_pg import PostgresStates

log = logging.getLogger(__name__)


async def open_services(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    stack: contextlib.AsyncExitStack,
) -> Services:
    """Every service of the application, running; `stack` closes them."""
    renderer = PromptRenderer.load(settings.tokenizer_path) if settings.load_tokenizer else None
    database = await open_database(settings, stack)
    sql, states = SqlContexts(), open_state_store(database)
    if database is not None:
        await sql.load(database, settings.datasets_dir)
        await states.start()
    http = await open_http(settings, transport, stack)
    log_ring = open_log_ring(settings, stack)
    engine = engine_side(settings, http)
    keeper = StateKeeper(
        states,
        engine.dispatcher,
        engine.facts.get,
        settings.state_touch_interval_s,
        functools.partial(routing_key, settings.server_secret),
    )
    sessions: SessionRegistry[LiveSession] = SessionRegistry(
        settings.max_sessions, settings.max_sessions_per_tenant
    )
    evictions = EvictionFollower(ResidentBlocks(), sessions, keeper, engine.metrics)
    popularity = await open_popularity(settings, database, stack)
    services = Services(
        settings=settings,
        vllm=engine.vllm,
        facts=engine.facts,
        renderer=renderer,
        dispatcher=engine.dispatcher,
        finals=engine.finals,
        contexts=sql,
        sessions=sessions,
        state_keeper=keeper,
        evictions=evictions,
        kv_feed=kv_feed_of(settings, evictions),
        metrics=engine.metrics,
        prefill_cost=engine.dispatcher.cost,
        popularity=popularity,
        rewarm=rewarmer_of(settings, popularity, engine),
        http=http,
        database=database,
        sql=sql,
        log_ring=log_ring,
        states=states,
    )
    engine.metrics.watch(
        lambda: len(sessions),
        lambda: engine.dispatcher.engine.in_flight,
        engine.scheduler.queued,
        lambda: len(engine.scheduler.running),
    )
    await run_in_background(services, stack)
    return services


async def open_http(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    stack: contextlib.AsyncExitStack,
) -> httpx.AsyncClient:
    """The one HTTP client to vLLM (`transport`: a test's), closed by `stack`."""
    timeouts = (settings.connect_timeout_s, settings.request_timeout_s)
    client = make_http_client(settings.vllm_base_url, *timeouts, transport)
    return await stack.enter_async_context(client)


def open_log_ring(settings: Settings, stack: contextlib.AsyncExitStack) -> LogRing:
    """The recent log lines `/logs` serves, collected until `stack` closes."""
    log_ring = LogRing(MAX_LOG_LINES, settings.log_format)
    log_ring.install()
    stack.callback(log_ring.uninstall)
    return log_ring


@dataclass(frozen=True)
class EngineSide:
    """What talks to vLLM: the client, its facts, the warm-up dispatcher and scheduler, the
    finals, and the metrics they count into."""

    vllm: VLLMClient
    facts: EngineFactsCache
    scheduler: WarmScheduler
    dispatcher: WarmDispatcher
    finals: Finals
    metrics: Metrics


def engine_side(settings: Settings, http: httpx.AsyncClient) -> EngineSide:
    metrics = Metrics()
    replicas = [str(url).rstrip("/") for url in settings.vllm_replica_urls]
    vllm = VLLMClient(http, on_error=metrics.upstream_error, replicas=replicas)
    scheduler = WarmScheduler.from_settings(settings, metrics.final_waited)
    dispatcher = WarmDispatcher(
        vllm,
        WarmupGate(settings.warmups_per_second),
        EngineWatch(settings.max_warmups_in_flight),
        settings.warm_priority,
        scheduler,
        metrics=metrics,
        report_chains=settings.kv_events_url is not None,
        piece_tokens=settings.warm_piece_tokens,
        cost=PrefillCost(),
    )
    facts = EngineFactsCache(vllm, settings.block_size)
    finals = Finals(vllm, scheduler, metrics)
    return EngineSide(vllm, facts, scheduler, dispatcher, finals, metrics)


def kv_feed_of(settings: Settings, evictions: EvictionFollower) -> KVEventFeed | None:
    """vLLM's KV events, when configured: they keep the followers' index in step."""
    if settings.kv_events_url is None:
        return None
    return KVEventFeed(
        settings.kv_events_url, settings.kv_events_replay_url, evictions, evictions.index
    )


def rewarmer_of(
    settings: Settings, popularity: Popularity | None, engine: EngineSide
) -> Rewarmer | None:
    if popularity is None:
        return None
    return Rewarmer(
        popularity,
        engine.dispatcher,
        engine.facts.get,
        settings.server_secret,
        settings.rewarm_budget_s,
    )


async def open_database(settings: Settings, stack: contextlib.AsyncExitStack) -> Database | None:
    """The database, started (embedded unless `DATABASE_URL`), or None when it is off."""
    if not settings.enable_database:
        return None
    database = Database(settings.database_url, settings.data_dir)
    await database.start()
    stack.push_async_callback(database.stop)
    return database


def open_state_store(database: Database | None) -> StateStore:
    return MemoryStates() if database is None else PostgresStates(database)


async def open_popularity(
    settings: Settings, database: Database | None, stack: contextlib.AsyncExitStack
) -> Popularity | None:
    """Prefix popularity, loaded (from the database, or kept in memory without one) and
    saved in the background; None when it is off."""
    if not settings.popularity_enabled:
        return None
    store: PopularityStore = (
        PostgresPopularityStore(database) if database is not None else MemoryPopularityStore()
    )
    popularity = Popularity(store, PopularityPolicy.of(settings))
    try:
        await popularity.load()
    except DatabaseError as error:
        log.warning("popularity kept in memory only: %s", error.message)
        popularity = Popularity(MemoryPopularityStore(), PopularityPolicy.of(settings))
    start_task(popularity.run(), stack)
    return popularity


async def run_in_background(services: Services, stack: contextlib.AsyncExitStack) -> None:
    """The watchers, the state keeper, the KV event feed, and the start-up re-warm of the
    popular contexts (waited for with `PREFILL_REWARM_BEFORE_READY`)."""
    start_task(services.watch_engine(), stack)
    start_task(services.watch_replicas(), stack)
    start_task(services.state_keeper.run(), stack)
    if services.kv_feed is not None:
        start_task(services.kv_feed.run(), stack)
    if services.rewarm is not None:
        stack.push_async_callback(services.rewarm.stop)
        first = services.rewarm.trigger("start")
        if services.settings.rewarm_before_ready:
            await asyncio.wait({first})


def start_task(work: Coroutine[Any, Any, None], stack: contextlib.AsyncExitStack) -> None:
    """Run `work` in the background until the stack closes (then it is cancelled)."""
    task = asyncio.create_task(work)
    stack.push_async_callback(stop_task, task)
