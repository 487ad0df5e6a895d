"""`python -m orchestrator.popularity show|warm`: the popularity index, from the rows in the
service's database (the settings' `DATABASE_URL`, or the embedded PostgreSQL of its data folder).

    show [--tenant T] [--top K]                  the top contexts of each cache scope
    warm [--tenant T] [--top K] [--budget-tokens N] [--budget-s S] [--vllm-url URL]
                                                 warm them in vLLM (a new replica, say)

`warm` derives each scope's cache salt from `PREFILL_SERVER_SECRET`, which must be the
serving orchestrator's: without it the warm-ups would land under salts no server uses.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import HttpUrl, ValidationError

from orchestrator.core.cache.rewarm import Rewarmer
from orchestrator.core.engine.vllm_client import VLLMClient, make_http_client
from orchestrator.core.engine.watch import EngineWatch
from orchestrator.core.popularity.index import Context
from orchestrator.core.popularity.popularity import (
    MemoryPopularityStore,
    Popularity,
    PopularityPolicy,
)
from orchestrator.core.warming.dispatch import WarmDispatcher
from orchestrator.core.warming.gate import WarmupGate
from orchestrator.core.warming.scheduler import WarmScheduler
from orchestrator.db.server import Database
from orchestrator.errors import ServiceError, SetupError
from orchestrator.popularity.store import PostgresPopularityStore
from orchestrator.settings import Settings

SECRET_ENV = "PREFILL_SERVER_SECRET"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.popularity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="the top contexts of each cache scope")
    warm = commands.add_parser("warm", help="warm the top contexts in vLLM")
    for command in (show, warm):
        command.add_argument("--tenant", help="only this tenant's contexts")
        command.add_argument("--top", type=positive, default=None, help="contexts per scope")
    warm.add_argument("--budget-tokens", type=positive, default=None, help="tokens in all")
    warm.add_argument("--budget-s", type=float, default=None, help="seconds in all")
    warm.add_argument("--vllm-url", default=None, help="the vLLM to warm (default: settings')")
    return parser


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


async def loaded(settings: Settings, tenant: str | None, top: int | None) -> Popularity:
    """The index of the stored rows (within the retention, opt-outs left out)."""
    if not settings.enable_database:
        raise SetupError("popularity is kept in the database: PREFILL_ENABLE_DATABASE=false")
    database = Database(settings.database_url, settings.data_dir)
    await database.start()
    try:
        store = PostgresPopularityStore(database)
        await store.start()
        policy = PopularityPolicy.of(settings)
        since = time.time() - policy.retention_s
        rows = await store.load(since, tenant)
    except ServiceError as error:
        raise SetupError(error.message) from error
    finally:
        await database.stop()
    if top is not None:
        policy = dataclasses.replace(policy, top_k=top)
    popularity = Popularity(
        MemoryPopularityStore(rows), dataclasses.replace(policy, opt_out=frozenset())
    )
    await popularity.load()
    return popularity


def table(contexts: Sequence[Context]) -> str:
    lines = [
        "| rank | tenant | namespace | label | tokens | score | expected saved tokens | last seen "
        "| chain |",
        "|---:|---|---|---|---:|---:|---:|---|---|",
    ]
    for rank, c in enumerate(contexts, start=1):
        seen = datetime.fromtimestamp(c.last_seen, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"| {rank} | {c.scope.tenant} | {c.scope.namespace or '-'} | {c.label or '-'} "
            f"| {len(c.tokens)} | {c.score:.2f} | {c.expected_saved:,.0f} | {seen} "
            f"| {c.chain[-1].hex()[:12]} |"
        )
    return "\n".join(lines)


async def show(settings: Settings, args: argparse.Namespace) -> None:
    popularity = await loaded(settings, args.tenant, args.top)
    if not popularity.indexes:
        print("no popularity recorded" + (f" for tenant {args.tenant!r}" if args.tenant else ""))
        return
    for block_size in sorted(popularity.indexes):
        print(f"block size {block_size}:")
        print(table(popularity.top(block_size, popularity.policy.top_k, args.tenant)))


async def warm(settings: Settings, args: argparse.Namespace) -> None:
    if not os.environ.get(SECRET_ENV):
        raise SetupError(f"{SECRET_ENV} is not set: warm-ups would land under salts no server uses")
    popularity = await loaded(settings, args.tenant, args.top)
    if args.budget_tokens is not None:
        budget = dataclasses.replace(popularity.policy, budget_tokens=args.budget_tokens)
        popularity.policy = budget
    http = make_http_client(
        settings.vllm_base_url, settings.connect_timeout_s, settings.request_timeout_s, None
    )
    try:
        vllm = VLLMClient(http)
        dispatcher = WarmDispatcher(
            vllm,
            WarmupGate(settings.warmups_per_second),
            EngineWatch(settings.max_warmups_in_flight),
            settings.warm_priority,
            WarmScheduler.from_settings(settings),
            piece_tokens=settings.warm_piece_tokens,
        )
        budget_s = args.budget_s if args.budget_s is not None else settings.rewarm_budget_s
        rewarmer = Rewarmer(
            popularity,
            dispatcher,
            lambda: vllm.facts(settings.block_size),
            settings.server_secret,
            budget_s,
        )
        progress = await rewarmer.run("cli", args.tenant)
    finally:
        await http.aclose()
    if progress.state == "waiting_for_engine":
        raise SetupError(f"vLLM at {settings.vllm_base_url} does not answer: {progress.error}")
    print(
        f"warmed {progress.warmed} of {progress.planned} contexts: {progress.planned_tokens} "
        f"tokens planned, {progress.prefill_tokens} computed, {progress.cached_tokens} already "
        f"cached; failed {progress.failed}, skipped {progress.skipped}"
        + (f" ({progress.error})" if progress.error else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
        if getattr(args, "vllm_url", None):
            settings = settings.model_copy(update={"vllm_url": HttpUrl(args.vllm_url)})
    except ValidationError as error:
        first = error.errors()[0]
        where = f"setting {first['loc'][0]}: " if first["loc"] else "settings: "
        print(f"error: {where}{first['msg']}", file=sys.stderr)
        return 2
    try:
        asyncio.run(show(settings, args) if args.command == "show" else warm(settings, args))
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
