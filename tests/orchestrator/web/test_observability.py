"""`GET /metrics` and `GET /status` against the fake vLLM: the counters move with what a
session does, parsed as Prometheus parses them; `/status` reads vLLM's own figures."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.core.engine.vllm_metrics import parse_engine_metrics
from orchestrator.core.metrics import Metrics
from testkit.fake_vllm import FakeVLLM
from testkit.serving import free_port, serve
from tests.fakes import session_tasks, wait_until
from tests.helpers import BLOCK, QUESTION
from tests.sessions import App, StartApp, started

MODES = ("keystroke", "context", "off", "http")


def samples(text: str) -> dict[str, float]:
    """Every sample as `name{label="value",...}` (labels sorted) → value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


async def scrape(app: App, headers: dict[str, str] | None = None) -> dict[str, float]:
    response = await (await app.http()).get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def ttft_count(figures: dict[str, float], mode: str) -> float:
    return figures[f'prefill_ahead_final_ttft_seconds_count{{mode="{mode}"}}']


def warmups(figures: dict[str, float], outcome: str) -> float:
    return figures[f'prefill_ahead_warmups_total{{outcome="{outcome}"}}']


async def submit_and_wait(client: Any, text: str, seq: int = 1) -> dict[str, Any]:
    await client.send(type="submit", text=text, seq=seq)
    done: dict[str, Any] = await client.next("done")
    await wait_until(lambda: not session_tasks(), what="the session's tasks to end")
    return done


# --- /metrics ---------------------------------------------------------------------------------


async def test_a_typed_session_moves_the_counters(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app(fresh=True)  # a registry of its own: the counts start at zero
    before = await scrape(app)
    assert before["prefill_ahead_keystrokes_total"] == 0
    assert all(ttft_count(before, mode) == 0 for mode in MODES)

    client = await started(app)
    keys = await client.type_text(QUESTION)
    await client.barrier()
    await wait_until(lambda: not session_tasks(), what="the warm-ups to land")
    open_now = await scrape(app)
    done = await submit_and_wait(client, QUESTION, keys)

    after = await scrape(app)
    assert open_now["prefill_ahead_sessions_open"] == 1
    assert after["prefill_ahead_keystrokes_total"] == keys
    landed = [record for record in fake.warmups if record.usage is not None]
    assert len(landed) == len(fake.warmups) >= 2  # the context, then the typed text
    assert warmups(after, "sent") == warmups(after, "landed") == len(landed)
    assert warmups(after, "failed") == 0
    cached = [record.usage["prompt_tokens_details"]["cached_tokens"] for record in landed]
    computed = sum(record.prompt_tokens for record in landed) - sum(cached)
    assert after["prefill_ahead_warm_prefill_tokens_total"] == computed
    assert after["prefill_ahead_warmup_gate_wait_seconds_count"] == len(landed)
    assert ttft_count(after, "keystroke") == 1
    assert all(ttft_count(after, mode) == 0 for mode in ("context", "off", "http"))
    assert after["prefill_ahead_final_prompt_tokens_total"] == done["prompt_tokens"]
    assert after["prefill_ahead_final_cached_tokens_total"] == done["cached_tokens"] > 0


async def test_ttft_is_labelled_by_warm_mode_and_http(start_app: StartApp, fake: FakeVLLM) -> None:
    app = await start_app(fresh=True)
    for mode in ("context", "off"):
        client = await started(app, warmups=mode)
        await submit_and_wait(client, "How many orders?")
    client = await started(app)
    ready = client.of_type("ready")[0]
    http = await app.http()
    chat = {"stream": True, "messages": [{"role": "user", "content": "How many orders?"}]}
    reply = await http.post(
        "/v1/chat/completions", json=chat, headers={"X-Session-Id": ready["session_id"]}
    )
    assert reply.status_code == 200

    figures = await scrape(app)
    assert {mode: ttft_count(figures, mode) for mode in MODES} == {
        "keystroke": 0, "context": 1, "off": 1, "http": 1,
    }  # fmt: skip
    prompts = sum(final.usage["prompt_tokens"] for final in fake.finals if final.usage)
    assert figures["prefill_ahead_final_prompt_tokens_total"] == prompts


async def test_warm_ups_not_admitted_or_failed_are_counted(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app(fresh=True, max_warmups_in_flight=1)
    fake.hold_warmups()
    await started(app)
    await wait_until(lambda: fake.warm_in_flight == 1, what="the first warm-up at the fake")
    await started(app)  # its context warm-up finds the one slot taken
    registry = app.services.metrics.registry
    count = lambda: registry.get_sample_value("prefill_ahead_warmups_total", {"outcome": "dropped"})  # noqa: E731
    await wait_until(lambda: (count() or 0) >= 1, what="a warm-up not admitted")
    dropped = warmups(await scrape(app), "dropped")
    fake.release_warmups()
    assert dropped >= 1

    fake.warm_status = 500
    failing = await started(app)
    await failing.next("error", lambda frame: frame["code"] == "warmup_failed")
    figures = await scrape(app)
    assert warmups(figures, "failed") >= 1
    assert figures['prefill_ahead_upstream_errors_total{kind="error"}'] >= 1


async def test_metrics_and_status_take_a_tenant_or_an_admin_key(start_app: StartApp) -> None:
    app = await start_app(api_keys={"tenant-key": "t"}, admin_api_keys=["admin-key"])
    http = await app.http()
    for path in ("/metrics", "/status"):
        assert (await http.get(path)).status_code == 401
        assert (await http.get(path, headers=bearer("wrong"))).status_code == 401
        for key in ("tenant-key", "admin-key"):
            assert (await http.get(path, headers=bearer(key))).status_code == 200
    assert (await http.get("/metrics")).json()["error"]["code"] == "invalid_api_key"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_rewarmed_after_eviction_is_a_counter_of_its_own() -> None:
    metrics = Metrics()
    metrics.rewarmed_after_eviction()
    metrics.rewarmed_after_eviction(3)
    figures = samples(generate_latest(metrics.registry).decode())
    assert figures["prefill_ahead_warmups_rewarmed_total"] == 4
    other = samples(generate_latest(Metrics().registry).decode())  # no shared registry
    assert other["prefill_ahead_warmups_rewarmed_total"] == 0


# --- /status ----------------------------------------------------------------------------------


def vllm_metrics_text(usage: tuple[float, float], queries: int, hits: int) -> str:
    """vLLM's /metrics as vLLM writes it (prometheus_client, two engines)."""
    registry = CollectorRegistry()
    labels = ["engine", "model_name"]
    kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage.", labels, registry=registry)
    asked = Counter("vllm:prefix_cache_queries", "Queried tokens.", labels, registry=registry)
    found = Counter("vllm:prefix_cache_hits", "Cached tokens.", labels, registry=registry)
    config = Gauge("vllm:cache_config_info", "CacheConfig", ["block_size"], registry=registry)
    config.labels(str(BLOCK)).set(1)
    for engine, share in enumerate(usage):
        kv.labels(str(engine), "fake-model").set(share)
        asked.labels(str(engine), "fake-model").inc(queries / 2)
        found.labels(str(engine), "fake-model").inc(hits / 2)
    return generate_latest(registry).decode()


class WithFigures:
    """The fake vLLM, with a fuller `/metrics` of its own."""

    def __init__(self, fake: ASGIApp, metrics: str) -> None:
        self.fake, self.metrics = fake, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/metrics":
            await self.fake(scope, receive, send)
            return
        headers = [(b"content-type", b"text/plain; version=0.0.4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.metrics.encode()})


@contextlib.asynccontextmanager
async def upstream_with_figures(fake: FakeVLLM, metrics: str) -> AsyncIterator[str]:
    async with serve(WithFigures(fake, metrics)) as url:
        yield url


async def test_status_reads_vllms_own_figures(start_app: StartApp, fake: FakeVLLM) -> None:
    metrics = vllm_metrics_text((0.2, 0.3), queries=400, hits=300)
    async with upstream_with_figures(fake, metrics) as url:
        app = await start_app(upstream=url, block_size=None)
        fake.hold_warmups()
        client = await started(app)
        await wait_until(lambda: fake.warm_in_flight == 1, what="the warm-up at the fake")
        response = await (await app.http()).get("/status")
        fake.release_warmups()
        await client.ws.close()
        await wait_until(lambda: not session_tasks(), what="the session to end")
    assert response.status_code == 200
    status = response.json()
    engine = status["engine"]
    assert engine["url"] == url
    assert engine["ok"] is True
    assert engine["model"] == "fake-model"
    assert engine["block_size"] == BLOCK
    assert engine["kv_cache_usage"] == pytest.approx(0.25)
    assert engine["prefix_cache_hit_rate"] == pytest.approx(0.75)
    assert status["kv_events"] == {"source": "belief", "state": "off"}
    assert status["sessions"] == {"open": 1}
    warmups = status["warmups"]
    assert (warmups["in_flight"], warmups["pieces_in_flight"], warmups["queued"]) == (1, 1, 0)
    assert warmups["finals_before_first_token"] == 0


async def test_status_says_null_for_what_vllm_does_not_tell(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    app = await start_app()  # the plain fake: block size only
    engine = (await (await app.http()).get("/status")).json()["engine"]
    assert engine["ok"] is True
    assert engine["kv_cache_usage"] is None
    assert engine["prefix_cache_hit_rate"] is None

    gone = await start_app(upstream=f"http://127.0.0.1:{free_port()}")
    response = await (await gone.http()).get("/status")
    assert response.status_code == 200
    down = response.json()["engine"]
    assert down["ok"] is False
    assert down["model"] is None
    assert down["kv_cache_usage"] is None
    assert "unreachable" in down["error"]


def test_engine_figures_from_text_vllm_writes() -> None:
    figures = parse_engine_metrics(vllm_metrics_text((0.5, 0.5), queries=0, hits=0))
    assert figures.kv_cache_usage == 0.5
    assert figures.prefix_cache_queries == 0
    assert figures.prefix_cache_hit_rate is None  # nothing asked yet: no rate
    assert figures.block_size == BLOCK
    assert parse_engine_metrics("not {prometheus").as_dict() == dict.fromkeys(figures.as_dict())


async def test_every_answer_carries_a_request_id(start_app: StartApp) -> None:
    app = await start_app()
    http = await app.http()
    made = (await http.get("/health")).headers["x-request-id"]
    assert made.startswith("prefill-")
    kept = await http.get("/health", headers={"X-Request-Id": "req-42"})
    assert kept.headers["x-request-id"] == "req-42"
    unfit = await http.get("/health", headers={"X-Request-Id": "two words"})
    assert unfit.headers["x-request-id"].startswith("prefill-")
    too_big = await http.post("/v1/warm", content=b"x" * 2_000_000, headers={"X-Request-Id": "b"})
    assert too_big.status_code == 413
    assert too_big.headers["x-request-id"] == "b"
    assert too_big.headers.get_list("x-request-id") == ["b"]
