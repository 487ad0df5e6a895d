"""What the eval reads from vLLM itself: version, served flags, token counts, busy time."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

LABELS = re.compile(r'(\w+)="([^"]*)"')
RUNNING = re.compile(r"^vllm:num_requests_running\{[^}]*\}\s+([0-9.eE+-]+)", re.MULTILINE)
INFO_GAUGES = ("vllm:cache_config_info", "vllm:model_config_info", "vllm:scheduler_config_info")
KEPT_LABELS = (
    "block_size", "cache_dtype", "enable_prefix_caching", "num_gpu_blocks", "num_cpu_blocks",
    "dtype", "max_model_len", "max_num_batched_tokens", "max_num_seqs", "policy",
    "enable_chunked_prefill", "long_prefill_token_threshold", "gpu_memory_utilization",
)  # fmt: skip


async def engine_settings(http: httpx.AsyncClient, vllm_url: str) -> dict[str, Any]:
    """vLLM's version and the configuration its `/metrics` info gauges expose."""
    facts: dict[str, Any] = {}
    with contextlib.suppress(httpx.HTTPError, ValueError):
        facts["vllm_version"] = (await http.get(f"{vllm_url}/version")).json().get("version")
    with contextlib.suppress(httpx.HTTPError):
        metrics = (await http.get(f"{vllm_url}/metrics")).text
        for line in metrics.splitlines():
            if line.startswith(INFO_GAUGES):
                labels = dict(LABELS.findall(line))
                facts |= {key: labels[key] for key in KEPT_LABELS if key in labels}
    return facts


async def count_tokens(http: httpx.AsyncClient, vllm_url: str, text: str) -> int:
    """Tokens of `text` alone, as the served tokenizer counts them."""
    body = {"prompt": text, "add_special_tokens": False}
    response = await http.post(f"{vllm_url}/tokenize", json=body)
    response.raise_for_status()
    return int(response.json()["count"])


class BusySampler:
    """Samples `vllm:num_requests_running` to tell the share of time vLLM was busy."""

    def __init__(self, http: httpx.AsyncClient, vllm_url: str, interval_s: float = 0.1) -> None:
        self.http, self.url, self.interval_s = http, f"{vllm_url}/metrics", interval_s
        self.samples = 0
        self.busy = 0

    @property
    def share(self) -> float | None:
        return round(self.busy / self.samples, 3) if self.samples else None

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                found = RUNNING.search((await self.http.get(self.url)).text)
                if found:
                    self.samples += 1
                    self.busy += float(found.group(1)) > 0
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))


@contextlib.asynccontextmanager
async def sampling_busy(http: httpx.AsyncClient, vllm_url: str) -> AsyncIterator[BusySampler]:
    sampler = BusySampler(http, vllm_url)
    task = asyncio.create_task(sampler.run())
    try:
        yield sampler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
