"""Named states in a real (embedded) PostgreSQL: the store's filters, and states that outlive
an orchestrator (a second one on the same database serves them and warms them again)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from orchestrator.core.states.state import State, new_state_id
from orchestrator.db.server import Database
from orchestrator.web.app import create_app
from orchestrator.web.state_store_pg import PostgresStates
from testkit.fake_vllm import FakeVLLM
from testkit.serving import serve
from tests.fakes import wait_until
from tests.sessions import Defaults, settings_for

pytestmark = pytest.mark.postgres

IDS = list(range(1, 100))


@pytest_asyncio.fixture(scope="module")
async def db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    database = Database(None, tmp_path_factory.mktemp("states-db"))
    await database.start()
    yield database
    await database.stop()


def state(tenant: str, expires_at: float) -> State:
    return State(new_state_id(), tenant, "salt", (1, 2, 3), 1.0, expires_at)


async def test_the_store_keeps_tokens_and_filters_by_tenant_and_expiry(db: Database) -> None:
    store = PostgresStates(db)
    await store.start()
    await store.start()  # idempotent
    mine = replace(state("a", 100.0), roles=("system",), source={"prompt": "x"}, parent="st_p")
    bare = state("a", 100.0)
    theirs, old = state("b", 100.0), state("a", 5.0)
    for item in (mine, bare, theirs, old):
        await store.put(item)
    found = await store.get("a", mine.id, now=10.0)
    assert found == mine
    assert found is not None
    assert found.source == {"prompt": "x"}
    assert await store.get("a", bare.id, now=10.0) == bare
    assert await store.get("a", theirs.id, now=10.0) is None
    assert await store.get("a", old.id, now=10.0) is None
    assert {s.id for s in await store.of_tenant("a", now=10.0)} == {mine.id, bare.id}
    assert not await store.delete("a", theirs.id)
    assert await store.purge(now=10.0) == 1
    assert {s.id for s in await store.live(now=10.0)} == {mine.id, bare.id, theirs.id}
    for item in (mine, bare, theirs):
        assert await store.delete(item.tenant, item.id)


async def test_states_outlive_the_orchestrator(
    db: Database, fake: FakeVLLM, tokenizer_dir: Path, tmp_path: Path
) -> None:
    settings = settings_for(
        fake.url,
        tokenizer_dir,
        Defaults(),
        enable_database=True,
        database_url=db.admin_url,
        datasets_dir=tmp_path,  # no text-to-SQL dataset
        state_touch_interval_s=3600,
    )
    async with serve(create_app(settings), websockets=True) as url, httpx.AsyncClient() as http:
        made = await http.post(f"{url}/v1/states", json={"prompt": IDS, "store_text": False})
        assert made.status_code == 201
    state_id = made.json()["id"]
    before = len(fake.warmups)
    async with serve(create_app(settings), websockets=True) as url, httpx.AsyncClient() as http:
        await wait_until(lambda: len(fake.warmups) > before, what="the re-warm at start")
        assert fake.warmups[-1].prompt == IDS[:97]
        again = await http.get(f"{url}/v1/states/{state_id}")
        assert again.status_code == 200
        assert again.json()["prompt_tokens"] == 99
        assert again.json()["input"] is None
        reply = await http.post(f"{url}/v1/states/{state_id}/completions", json={"prompt": [7]})
        assert reply.status_code == 200
        assert fake.finals[-1].prompt == [*IDS, 7]
        assert (await http.delete(f"{url}/v1/states/{state_id}")).status_code == 200
