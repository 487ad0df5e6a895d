"""DNS rebinding: the `Host` allow-list and the WebSocket Origin check (`web/hosts.py`).

A page on `evil.example` whose name re-binds to 127.0.0.1 reaches the service with its own
name as `Host` and `Origin`: every HTTP route answers it 400 in the error envelope, and its
WebSocket handshake is refused. The service's own names (localhost, 127.0.0.1, ::1, the
configured host, `PREFILL_ALLOWED_HOSTS`) pass.
"""

from __future__ import annotations

import asyncio
import base64
import json
from urllib.parse import urlsplit

import httpx
import pytest

from orchestrator.web.hosts import host_name, name_allowed, origin_allowed, trusted_hosts
from testkit.fake_vllm import FakeVLLM
from tests.helpers import settings_against
from tests.sessions import SECRET, App, StartApp, started

ROUTES = ["/health", "/status", "/metrics", "/logs", "/v1/states", "/v1/models", "/", "/docs"]


def assert_invalid_host(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_host",
        }
    }
    assert "is not allowed" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ROUTES)
async def test_a_foreign_host_gets_400_in_the_envelope(start_app: StartApp, path: str) -> None:
    app = await start_app()
    http = await app.http()
    for host in ("evil.example", "evil.example:8000", "rebind.attacker.example:" + port(app)):
        assert_invalid_host(await http.get(path, headers={"Host": host}))
    post = await http.post("/v1/warm", json={"prompt": [1, 2]}, headers={"Host": "evil.example"})
    assert_invalid_host(post)


@pytest.mark.parametrize(
    "host", ["", "127.0.0.1@evil.example", "evil.example/x", "127.0.0.1:notaport", "a b"]
)
async def test_a_malformed_host_gets_400(start_app: StartApp, host: str) -> None:
    app = await start_app()
    assert_invalid_host(await (await app.http()).get("/health", headers={"Host": host}))


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:{port}", "127.0.0.1:{port}", "[::1]"])
async def test_the_loopback_names_pass(start_app: StartApp, host: str) -> None:
    app = await start_app()
    reply = await (await app.http()).get("/health", headers={"Host": host.format(port=port(app))})
    assert reply.status_code == 200, reply.text


async def test_allowed_hosts_add_names_and_subdomain_patterns(start_app: StartApp) -> None:
    app = await start_app(allowed_hosts=["app.example.com", "*.corp.example"])
    http = await app.http()
    for host in ("app.example.com", "app.example.com:443", "a.corp.example", "localhost"):
        assert (await http.get("/health", headers={"Host": host})).status_code == 200, host
    for host in ("example.com", "corp.example", "app.example.com.evil.example"):
        assert_invalid_host(await http.get("/health", headers={"Host": host}))


async def handshake(app: App, host: str, origin: str | None) -> tuple[int, bytes]:
    """A raw WebSocket upgrade to the app's port with these `Host` and `Origin` headers:
    (the status, the body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(port(app)))
    key = base64.b64encode(b"0123456789abcdef").decode()
    lines = [
        "GET /ws/session HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *([f"Origin: {origin}"] if origin else []),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
         if line.startswith(b"content-length:")),
        0,
    )  # fmt: skip
    body = await reader.readexactly(length) if length else b""
    writer.close()
    return status, body


async def test_a_rebinding_page_cannot_open_a_session(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app()
    for host, origin in (
        ("evil.example:8000", "http://evil.example:8000"),
        (f"evil.example:{port(app)}", f"http://evil.example:{port(app)}"),
        ("evil.example", None),
    ):
        status, body = await handshake(app, host, origin)
        assert status == 400
        assert json.loads(body)["error"]["code"] == "invalid_host"
    assert len(app.services.sessions) == 0


async def test_the_origin_is_compared_with_the_allow_list_not_the_host(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(allowed_hosts=["*"])  # any Host passes; Origins still checked
    status, body = await handshake(app, "evil.example:8000", "http://evil.example:8000")
    assert status == 403
    assert json.loads(body)["error"]["code"] == "forbidden_origin"
    status, _ = await handshake(app, f"127.0.0.1:{port(app)}", f"http://localhost:{port(app)}")
    assert status == 101  # the page at localhost talking to 127.0.0.1: both the service's


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
async def test_the_page_under_a_loopback_name_opens_a_session(
    start_app: StartApp, fake: FakeVLLM, name: str
) -> None:
    app = await start_app()
    client = await started(app, origin=f"http://{name}:{port(app)}")
    assert client.of_type("ready")


def test_origins_need_a_trusted_name_at_the_service_port(tmp_path: object) -> None:
    settings = settings_against(
        "http://127.0.0.1:9", tmp_path, SECRET,  # type: ignore[arg-type]
        allowed_hosts=["app.example.com", "*"], allowed_origins=["https://typing.example"],
    )  # fmt: skip
    assert origin_allowed("http://localhost:8000", settings, 8000)
    assert origin_allowed("http://[::1]:8000", settings, 8000)
    assert origin_allowed("https://app.example.com:8000", settings, 8000)
    assert origin_allowed("https://typing.example", settings, 8000)
    assert not origin_allowed("http://localhost:8001", settings, 8000)  # another local service
    assert not origin_allowed("http://localhost", settings, 8000)
    assert not origin_allowed("http://evil.example:8000", settings, 8000)  # "*" never vouches
    assert not origin_allowed("null", settings, 8000)
    assert not origin_allowed("file://localhost:8000", settings, 8000)
    assert "app.example.com" in trusted_hosts(settings)
    assert host_name("[::1]:80") == "::1"
    assert host_name("x:y") is None
    assert not name_allowed("example.com", ("*.example.com",))


def port(app: App) -> str:
    return str(urlsplit(app.url).port)
