"""What the eval reads from vLLM itself: version, served flags, token counts."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import httpx

LABELS = re.compile(r'(\w+)="([^"]*)"')
INFO_GAUGES = ("vllm:cache_config_info", "vllm:model_config_info", "vllm:scheduler_config_info")
KEPT_LABELS = (
    "block_size",
    "cache_dtype",
    "enable_prefix_caching",
    "num_gpu_blocks",
    "num_cpu_blocks",
    "dtype",
    "max_model_len",
    "max_num_batched_tokens",
    "max_num_seqs",
    "policy",
    "enable_chunked_prefill",
    "long_prefill_token_threshold",
    "gpu_memory_utilization",
)


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
