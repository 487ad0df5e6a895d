"""The service's own Prometheus metrics, in a registry of their own (one per application).

Every name starts with `prefill_ahead_`; counters end in `_total`, durations are in seconds.
Warm-ups are counted by outcome (`prefill_ahead_warmups_total{outcome}`):

- `sent`: passed the finals' turn and the gate, handed to vLLM;
- `landed`: vLLM answered it (its blocks are cached);
- `failed`: vLLM answered an error, or did not answer;
- `dropped`: never sent (not admitted: the bound on warm-ups in flight, or vLLM's back-off),
  or called off before vLLM answered (settled by its own session's submit, preempted by
  another session's final request, replaced by a new start, or its session closed).

Every warm-up offered to the dispatcher ends as exactly one of `landed`, `failed`, `dropped`
(one turned away and retried counts again at each try); `sent` counts those that reached vLLM.
A warm-up planned while its own session's submit is under way is not offered, nor counted.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator.core.vllm_client import Usage
from orchestrator.errors import (
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

WARMUP_OUTCOMES = ("sent", "landed", "failed", "dropped")
FINAL_MODES = ("keystroke", "context", "off", "http")  # a session's warm mode, or an HTTP final
UPSTREAM_ERROR_KINDS = ("unavailable", "timeout", "rejected", "error")
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


def error_kind(error: UpstreamError) -> str:
    """The `kind` label of an upstream error."""
    if isinstance(error, UpstreamUnavailable):
        return "unavailable"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if isinstance(error, UpstreamRejected):
        return "rejected"
    return "error"


class Metrics:
    """What the orchestrator counts; `registry` is what `GET /metrics` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_open = Gauge(
            "prefill_ahead_sessions_open", "WebSocket sessions open.", registry=r
        )
        self.warmups_in_flight = Gauge(
            "prefill_ahead_warmups_in_flight", "Warm-ups admitted and not yet ended.", registry=r
        )
        self.keystrokes = Counter(
            "prefill_ahead_keystrokes", "Input frames (keystrokes) received.", registry=r
        )
        self.warmups = Counter(
            "prefill_ahead_warmups", "Warm-ups by outcome.", ["outcome"], registry=r
        )
        self.rewarmed = Counter(
            "prefill_ahead_warmups_rewarmed",
            "Warm-ups that re-warmed blocks vLLM had evicted (from its KV cache events).",
            registry=r,
        )
        self.warm_prefill_tokens = Counter(
            "prefill_ahead_warm_prefill_tokens",
            "Prompt tokens vLLM computed for warm-ups (prompt minus cached tokens).",
            registry=r,
        )
        self.final_prompt_tokens = Counter(
            "prefill_ahead_final_prompt_tokens", "Prompt tokens of final requests.", registry=r
        )
        self.final_cached_tokens = Counter(
            "prefill_ahead_final_cached_tokens",
            "Prompt tokens of final requests found in vLLM's prefix cache at submit.",
            registry=r,
        )
        self.final_ttft = Histogram(
            "prefill_ahead_final_ttft_seconds",
            "Time to first token of final requests (received to first token sent), by warm "
            "mode: keystroke, context, off, or http (a session's final over HTTP).",
            ["mode"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.gate_wait = Histogram(
            "prefill_ahead_warmup_gate_wait_seconds",
            "Time a warm-up waited for the finals' turn and the global rate gate.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "prefill_ahead_upstream_errors",
            "Failed calls to vLLM by kind: unavailable, timeout, rejected (4xx), error.",
            ["kind"],
            registry=r,
        )
        for outcome in WARMUP_OUTCOMES:
            self.warmups.labels(outcome)
        for mode in FINAL_MODES:
            self.final_ttft.labels(mode)
        for kind in UPSTREAM_ERROR_KINDS:
            self.upstream_errors.labels(kind)

    def watch(self, sessions_open: Callable[[], float], in_flight: Callable[[], float]) -> None:
        """Read the gauges from their owners at each scrape."""
        self.sessions_open.set_function(sessions_open)
        self.warmups_in_flight.set_function(in_flight)

    def warmup(self, outcome: str) -> None:
        self.warmups.labels(outcome).inc()

    def warmup_landed(self, usage: Usage) -> None:
        self.warmups.labels("landed").inc()
        self.warm_prefill_tokens.inc(max(0, usage.prompt_tokens - usage.cached_tokens))

    def rewarmed_after_eviction(self, n: int = 1) -> None:
        self.rewarmed.inc(n)

    def final_answered(
        self, mode: str, ttft_ms: float | None, usage: Usage | None, finish: str | None = None
    ) -> None:
        """A final request ended: its TTFT (None: no token came) and its prompt and cached
        tokens as vLLM counted them (not for one cancelled, or with no usage known)."""
        if ttft_ms is not None:
            self.final_ttft.labels(mode).observe(ttft_ms / 1000)
        if usage is not None and finish != "cancelled":
            self.final_prompt_tokens.inc(usage.prompt_tokens)
            self.final_cached_tokens.inc(usage.cached_tokens)

    def upstream_error(self, error: UpstreamError) -> None:
        self.upstream_errors.labels(error_kind(error)).inc()

    def upstream_status(self, status: int) -> None:
        """vLLM answered a relayed request with an error status."""
        self.upstream_errors.labels("rejected" if 400 <= status < 500 else "error").inc()
