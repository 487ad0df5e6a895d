"""TTFT through the passthrough vs straight to vLLM, side by side in one run.

    python -m eval bench-passthrough --vllm-url http://127.0.0.1:8001 [--requests 200]

Requests alternate between the two paths (same prompt, same salt for both, fully cached after
the first), so both see the same engine state; prints p50/p95 of each and the added latency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

from eval.reports.results import quantile
from orchestrator.core.engine.salt import tenant_salt
from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import serve_in_thread
from vllm_launch.signals import exits_on_signals


async def ttft_ms(http: httpx.AsyncClient, url: str, body: dict[str, object]) -> float:
    started = time.perf_counter()
    async with aconnect_sse(http, "POST", url, json=body) as events:
        events.response.raise_for_status()
        async for event in events.aiter_sse():
            if event.data != "[DONE]" and any(c.get("text") for c in event.json()["choices"]):
                return (time.perf_counter() - started) * 1000
    raise RuntimeError("the stream carried no token")


async def run(vllm_url: str, app_url: str, settings: Settings, requests: int) -> None:
    async with httpx.AsyncClient() as http:
        model = (await http.get(f"{vllm_url}/v1/models")).json()["data"][0]["id"]
    salt = tenant_salt(settings.server_secret, "anonymous")  # what the passthrough sets
    body = {
        "model": model,
        "prompt": "Summarise: the quick brown fox jumps over the lazy dog. " * 8,
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
        "priority": settings.final_priority,
    }
    direct_url, proxied_url = f"{vllm_url}/v1/completions", f"{app_url}/v1/completions"
    direct: list[float] = []
    proxied: list[float] = []
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(5):  # warm the cache and both connection pools
            await ttft_ms(http, direct_url, {**body, "cache_salt": salt})
            await ttft_ms(http, proxied_url, body)
        for index in range(requests):
            first_direct = index % 2 == 0
            for path in ("direct", "proxied") if first_direct else ("proxied", "direct"):
                if path == "direct":
                    direct.append(await ttft_ms(http, direct_url, {**body, "cache_salt": salt}))
                else:
                    proxied.append(await ttft_ms(http, proxied_url, body))
    report(direct, proxied)


def report(direct: list[float], proxied: list[float]) -> None:
    print(f"requests per path: {len(direct)}")
    print(f"{'path':<14}{'p50 ms':>10}{'p95 ms':>10}")
    for name, values in (("direct", direct), ("passthrough", proxied)):
        print(f"{name:<14}{statistics.median(values):>10.2f}{quantile(values, 0.95):>10.2f}")
    added = statistics.median(proxied) - statistics.median(direct)
    pairs = statistics.median(p - d for p, d in zip(proxied, direct, strict=True))
    print(f"added at p50: {added:.2f} ms (median of paired differences: {pairs:.2f} ms)")


@exits_on_signals
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval bench-passthrough")
    parser.add_argument("--vllm-url", default="http://127.0.0.1:8001")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)
    settings = Settings(
        vllm_url=args.vllm_url, enable_database=False, load_tokenizer=False, data_dir=Path(".data")
    )
    with serve_in_thread(create_app(settings)) as app_url:
        asyncio.run(run(args.vllm_url.rstrip("/"), app_url, settings, args.requests))
    return 0
