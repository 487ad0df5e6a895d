"""`DELETE /v1/popularity`: a tenant forgets its own prefix popularity; `DELETE
/v1/popularity/{tenant}`: an admin forgets any tenant's (the former `/v1/trace` paths still do,
deprecated). Forgotten means gone from the store, from the rows not yet saved
and from the popularity index (no hint, nothing re-warmed), and no other tenant's is touched."""

from __future__ import annotations

import pytest

from orchestrator.core.popularity.popularity import MemoryPopularityStore, Popularity
from testkit.fake_vllm import FakeVLLM
from tests.fakes import wait_until
from tests.helpers import QUESTION, SYSTEM
from tests.orchestrator.web.test_popularity_app import OTHER_SYSTEM, auth, final
from tests.sessions import App, Defaults, StartApp

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
ADMIN_KEY = "admin-key"


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    settings = {"api_keys": KEYS, "admin_api_keys": [ADMIN_KEY]}
    return Defaults(settings=settings, key="key-a", strict_fake=True)


async def recorded(app: App) -> Popularity:
    """Both tenants asked once; their rows recorded (and saved)."""
    popularity = app.services.popularity
    assert popularity is not None
    await final(app, "key-a", SYSTEM, QUESTION)
    await final(app, "key-b", OTHER_SYSTEM, "Where to?")
    await wait_until(lambda: popularity.recorded == 2, what="both finals to be recorded")
    await popularity.flush()
    return popularity


def stored_tenants(popularity: Popularity) -> set[str]:
    assert isinstance(popularity.store, MemoryPopularityStore)
    return {row.scope.tenant for row in [*popularity.store.rows, *popularity.pending]}


async def hints(app: App, key: str) -> list[object]:
    reply = await (await app.http()).get("/v1/hints", headers=auth(key))
    assert reply.status_code == 200
    contexts: list[object] = reply.json()["contexts"]
    return contexts


async def test_a_tenant_forgets_its_own_popularity_and_no_other(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True)
    popularity = await recorded(app)
    assert await hints(app, "key-a")
    http = await app.http()

    reply = await http.delete("/v1/popularity", headers=auth("key-a"))
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "object": "popularity",
        "tenant": "tenant-a",
        "deleted": True,
        "rows": 1,
    }
    assert stored_tenants(popularity) == {"tenant-b"}
    assert await hints(app, "key-a") == []
    assert await hints(app, "key-b")
    assert all(c.scope.tenant == "tenant-b" for c in popularity.top(32, 8))  # nothing to re-warm

    refused = await http.delete("/v1/popularity/tenant-b", headers=auth("key-a"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_key_required"
    own = await http.delete("/v1/popularity/tenant-a", headers=auth("key-a"))
    assert own.json()["rows"] == 0  # already forgotten
    assert (await http.delete("/v1/popularity")).status_code == 401
    assert stored_tenants(popularity) == {"tenant-b"}


async def test_an_admin_forgets_any_tenants_popularity(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app(fresh=True)
    popularity = await recorded(app)
    http = await app.http()
    reply = await http.delete("/v1/popularity/tenant-b", headers=auth(ADMIN_KEY))
    assert reply.status_code == 200, reply.text
    assert reply.json()["rows"] == 1
    assert stored_tenants(popularity) == {"tenant-a"}
    assert await hints(app, "key-b") == []
    assert await hints(app, "key-a")
    assert (await http.delete("/v1/popularity/tenant-b", headers=auth("nobody"))).status_code == 401


async def test_the_former_trace_paths_still_forget_and_say_they_are_deprecated(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True)
    popularity = await recorded(app)
    http = await app.http()
    own = await http.delete("/v1/trace", headers=auth("key-a"))
    assert own.json() == {"object": "popularity", "tenant": "tenant-a", "deleted": True, "rows": 1}
    other = await http.delete("/v1/trace/tenant-b", headers=auth(ADMIN_KEY))
    assert other.json()["rows"] == 1
    assert stored_tenants(popularity) == set()
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert paths["/v1/trace"]["delete"]["deprecated"] is True
    assert paths["/v1/trace/{tenant}"]["delete"]["deprecated"] is True
    assert not paths["/v1/popularity"]["delete"].get("deprecated")
