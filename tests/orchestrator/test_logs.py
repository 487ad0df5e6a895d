"""`GET /logs` (who may read it, how many lines) and the log lines themselves: text or JSON,
with the request and session they belong to."""

from __future__ import annotations

import contextvars
import json
import logging
from pathlib import Path
from typing import Any

import httpx

from orchestrator.logs import SESSION_ID, JsonFormatter, LogRing, TextFormatter, tail_lines
from orchestrator.settings import Settings
from testkit.fake_vllm import FakeVLLM
from tests.fakes import wait_until
from tests.sessions import App, StartApp, started

KEYS = {"api_keys": {"tenant-key": "t"}, "admin_api_keys": ["admin-key"]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def from_host(app: App, host: str) -> httpx.AsyncClient:
    """An in-process client of `app` that the app sees as coming from `host`."""
    transport = httpx.ASGITransport(app=app.app, client=(host, 40000))
    client = httpx.AsyncClient(transport=transport, base_url=app.url, timeout=10)
    return await app.stack.enter_async_context(client)


# --- who may read the logs ---------------------------------------------------------------------


async def test_without_keys_only_loopback_clients_read_the_logs(start_app: StartApp) -> None:
    app = await start_app()
    local = await (await app.http()).get("/logs")
    assert local.status_code == 200
    assert set(local.json()) == {"vllm", "orchestrator"}
    for host in ("::1", "127.0.0.2"):
        assert (await (await from_host(app, host)).get("/logs")).status_code == 200

    remote = await (await from_host(app, "203.0.113.7")).get("/logs")
    assert remote.status_code == 403
    assert remote.json()["error"]["type"] == "permission_error"
    assert (await (await from_host(app, "203.0.113.7")).get("/status")).status_code == 200


async def test_with_keys_only_an_admin_key_reads_the_logs(start_app: StartApp) -> None:
    app = await start_app(**KEYS)
    remote = await from_host(app, "203.0.113.7")  # an admin key works from anywhere
    assert (await remote.get("/logs", headers=bearer("admin-key"))).status_code == 200

    http = await app.http()  # loopback is no key
    nobody = await http.get("/logs")
    tenant = await http.get("/logs", headers=bearer("tenant-key"))
    wrong = await http.get("/logs", headers=bearer("not-a-key"))
    assert nobody.status_code == wrong.status_code == 401
    assert tenant.status_code == 403
    assert tenant.json() == {
        "error": {
            "message": "this needs an admin API key, not a tenant's",
            "type": "permission_error",
            "param": None,
            "code": "admin_key_required",
        }
    }
    assert (await http.post("/v1/warm", json={}, headers=bearer("admin-key"))).status_code == 401


async def test_logs_also_without_tenant_keys_need_the_admin_key(start_app: StartApp) -> None:
    app = await start_app(admin_api_keys=["admin-key"])
    http = await app.http()
    assert (await http.get("/logs")).status_code == 401
    assert (await http.get("/logs", headers=bearer("tenant?"))).status_code == 401
    assert (await http.get("/logs", headers=bearer("admin-key"))).status_code == 200


# --- how many lines ----------------------------------------------------------------------------


async def test_lines_is_the_tail_of_each_log(start_app: StartApp, tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    log.write_text("".join(f"vllm line {n}\n" for n in range(1, 3001)))
    app = await start_app(vllm_log_file=log)
    http = await app.http()
    client = await started(app)
    await client.ws.close()  # "session closed" is logged
    await wait_until(lambda: len(app.services.sessions) == 0, what="the session to close")

    five = (await http.get("/logs", params={"lines": 5})).json()
    assert five["vllm"] == [f"vllm line {n}" for n in range(2996, 3001)]
    assert len(five["orchestrator"]) <= 5
    assert "session closed" in five["orchestrator"][-1]
    assert len((await http.get("/logs")).json()["vllm"]) == 200
    assert len((await http.get("/logs", params={"lines": 2000})).json()["vllm"]) == 2000
    one = (await http.get("/logs", params={"lines": 1})).json()
    assert one["vllm"] == ["vllm line 3000"]
    assert len(one["orchestrator"]) == 1

    for bad in ("0", "2001", "-3", "many"):
        response = await http.get("/logs", params={"lines": bad})
        assert response.status_code == 400, bad
        error = response.json()["error"]
        assert (error["param"], error["code"]) == ("lines", "invalid_request")


async def test_no_vllm_log_is_no_lines(start_app: StartApp, tmp_path: Path) -> None:
    app = await start_app(vllm_log_file=tmp_path / "absent.log")
    assert (await (await app.http()).get("/logs")).json()["vllm"] == []


def test_vllms_log_is_where_the_launcher_writes_it(tmp_path: Path) -> None:
    derived = Settings(data_dir=tmp_path, vllm_url="http://127.0.0.1:8123", vllm_log_file=None)
    assert derived.vllm_log_path == tmp_path.resolve() / "logs" / "vllm-8123.log"
    assert Settings(vllm_log_file=tmp_path / "v.log").vllm_log_path == tmp_path / "v.log"


def test_tail_reads_backwards_across_blocks(tmp_path: Path) -> None:
    log = tmp_path / "long.log"
    log.write_text("".join(f"{n:07d} {'x' * 200}\n" for n in range(5000)))  # about 1 MB
    tail = tail_lines(log, 700)
    assert len(tail) == 700
    assert tail[0].startswith("0004300 ")
    assert tail[-1].startswith("0004999 ")
    assert tail_lines(tmp_path / "none.log", 5) == []
    assert tail_lines(tmp_path, 5) == []  # a folder


# --- the lines: text or JSON, with their ids ----------------------------------------------------


async def test_json_lines_carry_the_session_and_the_request(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(log_format="json")
    http = await app.http()
    client = await started(app)
    session_id = client.of_type("ready")[0]["session_id"]
    fake.final_status = 500
    failed = await http.post(
        "/v1/completions",
        json={"model": "fake-model", "prompt": "hi", "stream": True},
        headers={"X-Request-Id": "req-logs-1"},
    )
    assert failed.status_code == 500
    assert failed.headers["x-request-id"] == "req-logs-1"

    lines = [json.loads(line) for line in (await http.get("/logs")).json()["orchestrator"]]
    opened = [line for line in lines if line["message"].startswith("session opened")]
    assert any(line.get("session_id") == session_id for line in opened), lines
    relayed = [line for line in lines if line.get("request_id") == "req-logs-1"]
    assert relayed, lines
    assert relayed[-1]["level"] == "WARNING"
    assert relayed[-1]["logger"] == "orchestrator.core.engine.vllm_client"
    assert "500" in relayed[-1]["message"]
    assert {"ts", "level", "logger", "message"} <= set(relayed[-1])


def record(message: str, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("orchestrator.test", logging.WARNING, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_its_fields_and_ids_only_when_known() -> None:
    plain = json.loads(JsonFormatter().format(record("hello")))
    assert set(plain) == {"ts", "level", "logger", "message"}
    assert (plain["level"], plain["logger"], plain["message"]) == (
        "WARNING", "orchestrator.test", "hello",
    )  # fmt: skip

    def in_a_session() -> str:
        SESSION_ID.set("s-1")
        return JsonFormatter().format(record("typed", request_id="r-1"))

    line = json.loads(contextvars.copy_context().run(in_a_session))
    assert (line["session_id"], line["request_id"]) == ("s-1", "r-1")
    assert "session_id" not in json.loads(JsonFormatter().format(record("after")))
    text = TextFormatter().format(record("typed", session_id="s-2"))
    assert text.endswith("orchestrator.test: typed [session_id=s-2]")


def test_the_ring_keeps_the_last_lines_and_leaves_the_logger_as_it_was() -> None:
    logger = logging.getLogger("orchestrator.ringtest")
    ring = LogRing(3)
    ring.install("orchestrator.ringtest")
    for n in range(5):
        logger.info("line %d", n)
    assert [line.rsplit(": ", 1)[1] for line in ring.tail(10)] == ["line 2", "line 3", "line 4"]
    assert len(ring.tail(2)) == 2
    ring.uninstall()
    logger.info("after")
    assert len(ring.tail(10)) == 3
    assert logger.level == logging.NOTSET
    assert ring not in logger.handlers
