"""vLLM's own figures, read from its Prometheus `/metrics` (for `GET /status`).

vLLM exposes (0.32; counters with `_total`, one sample per engine, labelled `engine` and
`model_name`): `vllm:kv_cache_usage_perc` (a gauge, 1 = full), `vllm:prefix_cache_queries`
and `vllm:prefix_cache_hits` (counters of prompt tokens looked up / found since start),
`vllm:num_requests_running` / `vllm:num_requests_waiting`, and `vllm:cache_config_info`
(its `block_size` label). A figure vLLM does not expose is None.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
PREFIX_QUERIES = "vllm:prefix_cache_queries"
PREFIX_HITS = "vllm:prefix_cache_hits"
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
CACHE_CONFIG = "vllm:cache_config_info"


@dataclass(frozen=True)
class EngineFigures:
    block_size: int | None = None
    kv_cache_usage: float | None = None  # 0..1, the mean over engines
    prefix_cache_queries: float | None = None  # summed over engines
    prefix_cache_hits: float | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        """Hits per queried token since vLLM started (None before the first query)."""
        if not self.prefix_cache_queries or self.prefix_cache_hits is None:
            return None
        return self.prefix_cache_hits / self.prefix_cache_queries

    def as_dict(self) -> dict[str, Any]:
        return {
            "block_size": self.block_size,
            "kv_cache_usage": self.kv_cache_usage,
            "prefix_cache_hit_rate": self.prefix_cache_hit_rate,
            "prefix_cache_queries": self.prefix_cache_queries,
            "prefix_cache_hits": self.prefix_cache_hits,
            "requests_running": self.requests_running,
            "requests_waiting": self.requests_waiting,
        }


def samples(text: str) -> tuple[dict[str, list[float]], int | None]:
    """Sample values by name (as parsed before any malformed line), and the block size."""
    values: dict[str, list[float]] = defaultdict(list)
    block_size = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[sample.name].append(float(sample.value))
                if sample.name == CACHE_CONFIG and sample.labels.get("block_size", "").isdigit():
                    block_size = int(sample.labels["block_size"])
    except ValueError:
        pass  # a line the parser does not understand: keep what came before it
    return values, block_size


def parse_engine_metrics(text: str) -> EngineFigures:
    values, block_size = samples(text)

    def total(name: str) -> float | None:
        found = values.get(name) or values.get(f"{name}_total")
        return sum(found) if found else None

    usage = values.get(KV_CACHE_USAGE)
    return EngineFigures(
        block_size=block_size,
        kv_cache_usage=sum(usage) / len(usage) if usage else None,
        prefix_cache_queries=total(PREFIX_QUERIES),
        prefix_cache_hits=total(PREFIX_HITS),
        requests_running=total(RUNNING),
        requests_waiting=total(WAITING),
    )
