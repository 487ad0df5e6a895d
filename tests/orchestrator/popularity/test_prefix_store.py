"""Prefix popularity in a real embedded PostgreSQL (`orchestrator/popularity/store.py`): rows
round-trip, retention and opt-outs delete, a restarted service re-warms from it, and the
command line."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from orchestrator.core.popularity.index import Scope, block_chain, reusable_prefix
from orchestrator.core.popularity.popularity import PopularityRow
from orchestrator.db.server import Database
from orchestrator.popularity.cli import main
from orchestrator.popularity.store import PostgresPopularityStore
from orchestrator.web.app import create_app
from testkit.fake_vllm import FakeVLLM
from testkit.serving import serve
from tests.fakes import fake_on_a_port, wait_until
from tests.helpers import BLOCK, QUESTION, SYSTEM, settings_against
from tests.orchestrator.web.test_popularity_app import KEYS, final
from tests.sessions import SECRET, App, salt

pytestmark = pytest.mark.postgres

A, Z = Scope("tenant-a"), Scope("tenant-z", "ns")


@pytest_asyncio.fixture(scope="module")
async def db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    database = Database(None, tmp_path_factory.mktemp("popularity-db"))
    await database.start()
    yield database
    await database.stop()


@pytest_asyncio.fixture
async def store(db: Database) -> AsyncIterator[PostgresPopularityStore]:
    popularity = PostgresPopularityStore(db)
    await popularity.start()
    await popularity.execute("TRUNCATE prefill_prefix_popularity")
    yield popularity


def row(scope: Scope, at: float, kind: str = "final") -> PopularityRow:
    tokens = tuple(range(100, 100 + 2 * BLOCK))
    chain = tuple(block_chain(scope, tokens, BLOCK))
    return PopularityRow(scope, kind, BLOCK, chain, tokens, at, "demo")  # type: ignore[arg-type]


async def test_rows_round_trip_and_retention_and_opt_outs_delete(
    store: PostgresPopularityStore,
) -> None:
    now = time.time()
    rows = [row(A, now - 7200), row(A, now - 10, "warm"), row(Z, now - 5)]
    await store.append(rows)
    loaded = await store.load(now - 86400)
    assert [(r.scope, r.kind, r.chain, r.tokens, r.label) for r in loaded] == [
        (r.scope, r.kind, r.chain, r.tokens, r.label) for r in rows
    ]
    assert [r.at for r in loaded] == pytest.approx([r.at for r in rows], abs=1e-3)
    assert [r.scope for r in await store.load(now - 86400, "tenant-z")] == [Z]
    assert await store.prune(now - 3600) == 1
    assert await store.forget(["tenant-z"]) == 1
    assert [r.kind for r in await store.load(0)] == ["warm"]


async def test_a_restarted_service_rewarms_from_the_stored_rows_and_the_cli_shows_them(
    store: PostgresPopularityStore,
    db: Database,
    tokenizer_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with fake_on_a_port(FakeVLLM(strict=True)) as vllm:
        settings = settings_against(
            vllm.url, tokenizer_dir, SECRET, enable_database=True, database_url=db.admin_url,
            datasets_dir=tmp_path, api_keys=KEYS,
        )  # fmt: skip
        app = create_app(settings)
        async with serve(app, websockets=True) as url:
            async with contextlib.AsyncExitStack() as stack:
                done = await final(App(settings, app, url, stack), "key-a", SYSTEM, QUESTION)
            popularity = app.state.services.popularity
            await wait_until(lambda: not popularity.pending, what="the rows to be saved")
        [saved] = await store.load(0)
        final_prompt = vllm.finals[0].prompt
        assert saved.tokens == tuple(reusable_prefix(final_prompt, BLOCK))
        assert done["prompt_tokens"] == len(final_prompt)

        # A new service (a deploy) warms it before anyone asks.
        vllm.reset()
        again = create_app(settings)
        async with serve(again, websockets=True):
            rewarm = again.state.services.rewarm
            await wait_until(
                lambda: rewarm.progress.reason == "start" and rewarm.progress.state == "done",
                what="the start-up re-warm",
            )
        assert [w.body["cache_salt"] for w in vllm.warmups] == [salt("tenant-a")]
        assert vllm.warmups[0].prompt[:-1] == list(saved.tokens)

        # The command line: show the index, and warm it in a vLLM (a new replica, say).
        monkeypatch.setenv("DATABASE_URL", db.admin_url)
        monkeypatch.setenv("PREFILL_VLLM_URL", vllm.url)
        monkeypatch.setenv("PREFILL_BLOCK_SIZE", str(BLOCK))
        monkeypatch.delenv("PREFILL_SERVER_SECRET", raising=False)
        assert await asyncio.to_thread(main, ["show", "--tenant", "tenant-a"]) == 0
        shown = capsys.readouterr().out
        assert "| 1 | tenant-a | - | - |" in shown
        assert await asyncio.to_thread(main, ["show", "--tenant", "tenant-q"]) == 0
        assert "no popularity recorded for tenant 'tenant-q'" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["warm"]) == 1
        assert "PREFILL_SERVER_SECRET is not set" in capsys.readouterr().err
        monkeypatch.setenv("PREFILL_SERVER_SECRET", SECRET)
        vllm.reset()
        assert await asyncio.to_thread(main, ["warm", "--tenant", "tenant-a"]) == 0
        assert capsys.readouterr().out.startswith("warmed 1 of 1 contexts")
        assert [w.body["cache_salt"] for w in vllm.warmups] == [salt("tenant-a")]
        monkeypatch.setenv("PREFILL_ENABLE_DATABASE", "false")
        assert await asyncio.to_thread(main, ["show"]) == 1
        assert capsys.readouterr().err.startswith("error: popularity is kept in the database")
