"""The service's own Prometheus metrics, in a registry of their own (one per application).

Every name starts with `prefill_ahead_`; counters end in `_total`, durations are in seconds.
Warm-up pieces (a warm-up goes out as pieces, `dispatch.py`) are counted by outcome
(`prefill_ahead_warmups_total{outcome}`):

- `sent`: given its turn by the scheduler, passed the rate gate, handed to vLLM;
- `landed`: vLLM answered it (its blocks are cached);
- `failed`: vLLM answered an error, or did not answer;
- `cancelled`: called off after it was sent (its session's submit, a new start, its session
  closed): vLLM aborts it, the blocks it finished stay cached;
- `dropped`: never sent (not admitted: the bound on warm-ups outstanding, or vLLM's
  back-off; or called off while it waited for its turn).

Every piece ends as exactly one of `landed`, `failed`, `cancelled`, `dropped` (a warm-up turned
away and retried counts again at each try); `sent` = landed + failed + cancelled.
A warm-up planned while its own session's submit is under way is not offered, nor counted.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator.core.engine.vllm_client import Usage
from orchestrator.errors import (
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

WARMUP_OUTCOMES = ("sent", "landed", "failed", "cancelled", "dropped")
SPECULATION_OUTCOMES = ("sent", "attached", "wasted", "dropped", "refused")
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
        self.add_load(self.registry)
        self.add_warmups(self.registry)
        self.add_finals(self.registry)
        self.add_scheduler(self.registry)
        self.add_upstream(self.registry)
        self.add_speculation(self.registry)

    # Each group registers its metrics in the order `GET /metrics` lists them.

    def add_load(self, r: CollectorRegistry) -> None:
        """What the sessions bring: sessions open, warm-ups outstanding, keystrokes."""
        self.sessions_open = Gauge(
            "prefill_ahead_sessions_open", "WebSocket sessions open.", registry=r
        )
        self.warmups_in_flight = Gauge(
            "prefill_ahead_warmups_in_flight", "Warm-ups admitted and not yet ended.", registry=r
        )
        self.keystrokes = Counter(
            "prefill_ahead_keystrokes", "Input frames (keystrokes) received.", registry=r
        )

    def add_warmups(self, r: CollectorRegistry) -> None:
        """Warm-up pieces by outcome, re-warms after an eviction, the prefill they cost."""
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
        for outcome in WARMUP_OUTCOMES:
            self.warmups.labels(outcome)

    def add_finals(self, r: CollectorRegistry) -> None:
        """Final requests: their prompt and cached tokens, their time to first token."""
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
        for mode in FINAL_MODES:
            self.final_ttft.labels(mode)

    def add_scheduler(self, r: CollectorRegistry) -> None:
        """The warm-up scheduler: waits for a turn, pieces queued and inside vLLM, the time
        finals shared the engine with warm-ups."""
        self.gate_wait = Histogram(
            "prefill_ahead_warmup_gate_wait_seconds",
            "Time a warm-up piece waited for its turn in the scheduler and the rate gate.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.warm_queue = Gauge(
            "prefill_ahead_warmup_pieces_queued", "Warm-up pieces waiting for a turn.", registry=r
        )
        self.pieces_running = Gauge(
            "prefill_ahead_warmup_pieces_in_flight", "Warm-up pieces inside vLLM.", registry=r
        )
        self.final_overlap = Histogram(
            "prefill_ahead_final_warmup_overlap_seconds",
            "Time a final request waited for its first token while warm-up pieces ran in vLLM.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )

    def add_upstream(self, r: CollectorRegistry) -> None:
        """Failed calls to vLLM, by kind."""
        self.upstream_errors = Counter(
            "prefill_ahead_upstream_errors",
            "Failed calls to vLLM by kind: unavailable, timeout, rejected (4xx), error.",
            ["kind"],
            registry=r,
        )
        for kind in UPSTREAM_ERROR_KINDS:
            self.upstream_errors.labels(kind)

    def add_speculation(self, r: CollectorRegistry) -> None:
        """Speculative finals by outcome, and the generated tokens thrown away."""
        self.speculations = Counter(
            "prefill_ahead_speculations",
            "Speculative finals by outcome: sent (to vLLM), attached (to the submit), wasted "
            "(sent, then cancelled by an edit or not matching the submit), dropped (cancelled "
            "before it was sent), refused (mode idle and the engine busy, or too much uncached).",
            ["outcome"],
            registry=r,
        )
        self.speculation_wasted_tokens = Counter(
            "prefill_ahead_speculation_wasted_tokens",
            "Generated tokens of speculative finals thrown away.",
            registry=r,
        )
        for outcome in SPECULATION_OUTCOMES:
            self.speculations.labels(outcome)

    def watch(
        self,
        sessions_open: Callable[[], float],
        in_flight: Callable[[], float],
        queued: Callable[[], float] = lambda: 0.0,
        running: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """Read the gauges from their owners at each scrape."""
        self.sessions_open.set_function(sessions_open)
        self.warmups_in_flight.set_function(in_flight)
        self.warm_queue.set_function(queued)
        self.pieces_running.set_function(running)

    def final_waited(self, overlap_s: float) -> None:
        self.final_overlap.observe(overlap_s)

    def warmup(self, outcome: str) -> None:
        self.warmups.labels(outcome).inc()

    def warmup_landed(self, usage: Usage) -> None:
        self.warmups.labels("landed").inc()
        self.warm_prefill_tokens.inc(max(0, usage.prompt_tokens - usage.cached_tokens))

    def speculation(self, outcome: str, wasted_tokens: int = 0) -> None:
        self.speculations.labels(outcome).inc()
        self.speculation_wasted_tokens.inc(wasted_tokens)

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
