"""Prefix popularity in the running service, against the fake vLLM: what sessions record, the
re-warm when vLLM comes back (with no session open), `GET /v1/hints`, and tenant separation."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core.popularity.index import reusable_prefix
from testkit.fake_vllm import FakeVLLM
from testkit.serving import Upstream
from tests.fakes import wait_until
from tests.helpers import BLOCK, QUESTION, SYSTEM
from tests.sessions import App, Defaults, StartApp, salt, started

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
ADMIN_KEY = "admin-key"
OTHER_SYSTEM = "You are a terse travel agent. " * 20


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    settings = {"api_keys": KEYS, "admin_api_keys": [ADMIN_KEY]}
    return Defaults(settings=settings, key="key-a", strict_fake=True)


async def final(app: App, key: str, system: str, text: str, **start: Any) -> dict[str, Any]:
    """A session's final request with no warm-up: its `done` frame (the session then closes)."""
    client = await started(app, key=key, context={"system": system}, warmups="off", **start)
    await client.send(type="submit", text=text, seq=1)
    done = await client.next("done")
    await client.ws.close()
    return done


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_restarted_vllm_gets_each_tenants_hot_contexts_under_its_own_salt(
    start_app: StartApp,
) -> None:
    vllm = FakeVLLM(strict=True)
    upstream = Upstream(vllm)
    await upstream.start()
    app = await start_app(upstream=upstream.url)
    app.stack.push_async_callback(upstream.stop)
    services = app.services
    for _ in range(2):
        await final(app, "key-a", SYSTEM, QUESTION)
    await final(app, "key-b", OTHER_SYSTEM, "Where to?", cache_namespace="team-b")
    finals = {(f.body["cache_salt"]): f.prompt for f in vllm.finals}
    assert set(finals) == {salt("tenant-a"), salt("tenant-b", "team-b")}
    await wait_until(lambda: len(services.sessions) == 0, what="the sessions to close")

    # vLLM restarts (its cache empty) while nobody is connected: the re-warm sends each
    # tenant's contexts under that tenant's own salt, and nothing else.
    await upstream.kill()
    await wait_until(lambda: not services.engine.up, what="the engine watch to see it gone")
    vllm.reset()
    await upstream.start()
    assert services.rewarm is not None
    await wait_until(
        lambda: (
            services.rewarm is not None
            and services.rewarm.progress.reason == "engine_recovered"
            and services.rewarm.progress.state == "done"
        ),
        what="the re-warm after the restart",
    )
    assert vllm.finals == []
    assert vllm.warmups, "nothing was re-warmed"
    for warm in vllm.warmups:
        own = finals[warm.body["cache_salt"]]  # a salt of one of the tenants, never another
        blocks = warm.prompt[:-1]
        assert len(blocks) % BLOCK == 0
        assert own[: len(blocks)] == blocks  # a prefix of that tenant's own prompt
        assert warm.body["priority"] == app.settings.warm_priority
    a_blocks = reusable_prefix(finals[salt("tenant-a")], BLOCK)
    assert any(w.prompt[:-1] == a_blocks for w in vllm.warmups)
    health = (await (await app.http()).get("/health", headers=auth(ADMIN_KEY))).json()
    assert health["rewarm"]["state"] == "done"
    assert health["rewarm"]["warmed"] == len(vllm.warmups)

    # The next user of tenant-a's context finds its blocks cached at once.
    done = await final(app, "key-a", SYSTEM, QUESTION)
    assert done["cached_tokens"] == len(a_blocks)


async def test_hints_list_only_the_callers_own_contexts(start_app: StartApp) -> None:
    app = await start_app(fresh=True)
    await final(app, "key-a", SYSTEM, QUESTION)
    await final(app, "key-a", SYSTEM, "Which products sold best?")
    await final(app, "key-b", OTHER_SYSTEM, "Where to?", cache_namespace="team-b")
    http = await app.http()

    async def hints(key: str, **params: Any) -> list[dict[str, Any]]:
        reply = await http.get("/v1/hints", headers=auth(key), params=params)
        assert reply.status_code == 200, reply.text
        contexts: list[dict[str, Any]] = reply.json()["contexts"]
        return contexts

    own = await hints("key-a")
    assert own
    assert own[0]["score"] == pytest.approx(2.0, rel=1e-3)  # the context both questions share
    assert set(own[0]) == {"rank", "label", "tokens", "score", "expected_saved_tokens",
                           "last_seen"}  # fmt: skip
    assert await hints("key-b") == []  # its traffic was in a namespace of its own
    theirs = await hints("key-b", cache_namespace="team-b")
    assert [h["score"] for h in theirs] == [pytest.approx(1.0, rel=1e-3)]
    assert await hints("key-a", cache_namespace="team-b") == []  # the same name, another tenant
    bad = await http.get("/v1/hints", headers=auth("key-a"), params={"top": 0})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "top"
    assert (await http.get("/v1/hints")).status_code == 401


async def test_an_opted_out_tenant_is_neither_recorded_nor_re_warmed(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(popularity_opt_out_tenants=["tenant-a"])
    await final(app, "key-a", SYSTEM, QUESTION)
    popularity = app.services.popularity
    assert popularity is not None
    assert popularity.recorded == 0
    assert app.services.rewarm is not None
    before = len(fake.warmups)
    progress = await app.services.rewarm.run("test")
    assert progress.planned == 0
    assert len(fake.warmups) == before
    reply = await (await app.http()).get("/v1/hints", headers=auth("key-a"))
    assert reply.json()["contexts"] == []


async def test_session_warm_ups_are_recorded_and_a_popularity_off_service_keeps_nothing(
    start_app: StartApp,
) -> None:
    app = await start_app(fresh=True)
    client = await started(app)
    await client.next("warm")  # the context, warmed at start
    popularity = app.services.popularity
    assert popularity is not None
    await wait_until(lambda: popularity.recorded == 1, what="the warm-up to be recorded")
    assert [row.kind for row in popularity.pending] == ["warm"]
    off = await start_app(popularity_enabled=False)
    await final(off, "key-a", SYSTEM, QUESTION)
    assert off.services.popularity is None
    assert "rewarm" not in (await (await off.http()).get("/health", headers=auth(ADMIN_KEY))).json()
    reply = await (await off.http()).get("/v1/hints", headers=auth("key-a"))
    assert reply.json()["contexts"] == []
