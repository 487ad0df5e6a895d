"""Who reads what on the ops endpoints: `/status`, `/metrics`, `/logs`, `/health`.

An admin key reads the service's figures; a tenant's key its own only (its sessions, and the
engine facts its sessions are told anyway); no key: `/health` says whether the service is up
and nothing more. With no key configured at all, a loopback client is the service's operator
(an admin); a client from elsewhere is the anonymous tenant.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from testkit.fake_vllm import FakeVLLM
from tests.orchestrator.web.test_observability import samples
from tests.sessions import App, Defaults, StartApp, started

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
ADMIN_KEY = "admin-key"
SERVICE_WIDE = ("kv_events", "warmups", "popularity", "rewarm")


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    return Defaults(settings={"api_keys": KEYS, "admin_api_keys": [ADMIN_KEY]}, key="key-a")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def sessions(app: App, a: int, b: int) -> None:
    for key, count in (("key-a", a), ("key-b", b)):
        for _ in range(count):
            await started(app, key=key)


async def test_status_tenants_see_their_own_and_admins_the_service(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    await sessions(app, a=2, b=1)
    http = await app.http()
    for key, open_sessions in (("key-a", 2), ("key-b", 1)):
        body = (await http.get("/status", headers=auth(key))).json()
        assert body == {
            "audience": "tenant",
            "engine": {"ok": True, "model": "fake-model", "block_size": 32},
            "sessions": {"open": open_sessions},
        }
        assert fake.url not in str(body)
    admin = (await http.get("/status", headers=auth(ADMIN_KEY))).json()
    assert admin["audience"] == "admin"
    assert admin["sessions"] == {"open": 3}
    assert admin["engine"]["url"] == fake.url
    assert all(figure in admin for figure in SERVICE_WIDE)
    for headers in ({}, auth("nobody")):
        assert (await http.get("/status", headers=headers)).status_code == 401


async def test_metrics_tenants_get_only_figures_of_their_own(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()
    await sessions(app, a=1, b=2)
    http = await app.http()
    for key, open_sessions in (("key-a", 1), ("key-b", 2)):
        reply = await http.get("/metrics", headers=auth(key))
        assert reply.status_code == 200
        assert samples(reply.text) == {"prefill_ahead_sessions_open": open_sessions}
    admin = samples((await http.get("/metrics", headers=auth(ADMIN_KEY))).text)
    assert admin["prefill_ahead_sessions_open"] == 3
    assert 'prefill_ahead_warmups_total{outcome="landed"}' in admin
    assert (await http.get("/metrics")).status_code == 401


async def test_logs_are_the_admins(start_app: StartApp) -> None:
    app = await start_app()
    http = await app.http()
    assert (await http.get("/logs")).status_code == 401
    refused = await http.get("/logs", headers=auth("key-a"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_key_required"
    assert (await http.get("/logs", headers=auth(ADMIN_KEY))).status_code == 200


async def test_health_without_a_key_says_only_whether_it_is_up(start_app: StartApp) -> None:
    app = await start_app(vllm_replica_urls=["http://127.0.0.1:9", "http://127.0.0.1:19"])
    http = await app.http()
    for headers in ({}, auth("key-a")):
        reply = await http.get("/health", headers=headers)
        assert reply.json() == {"status": "degraded"}  # the listed replicas are not there
        assert reply.status_code == 503
    admin = (await http.get("/health", headers=auth(ADMIN_KEY))).json()
    assert admin["vllm"]["url"] == app.settings.vllm_base_url
    assert [r["url"] for r in admin["vllm"]["replicas"]] == [
        "http://127.0.0.1:9",
        "http://127.0.0.1:19",
    ]
    assert (await http.get("/health", headers=auth("nobody"))).status_code == 401


async def keyless_client(app: App, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app.app, client=(host, 40000))
    client = httpx.AsyncClient(transport=transport, base_url=app.url, timeout=10)
    return await app.stack.enter_async_context(client)


async def test_keyless_loopback_is_the_operator_and_elsewhere_a_tenant(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(api_keys={}, admin_api_keys=[])
    await started(app, key=None)
    local = await keyless_client(app, "127.0.0.1")
    remote = await keyless_client(app, "192.0.2.7")
    health: dict[str, Any] = (await local.get("/health")).json()
    assert health["vllm"]["url"] == fake.url
    assert (await local.get("/status")).json()["audience"] == "admin"
    assert (await local.get("/logs")).status_code == 200
    assert (await remote.get("/health")).json() == {"status": "ok"}
    status = (await remote.get("/status")).json()
    assert status["audience"] == "tenant"
    assert status["sessions"] == {"open": 1}  # the anonymous tenant's own session
    assert (await remote.get("/logs")).status_code == 403
