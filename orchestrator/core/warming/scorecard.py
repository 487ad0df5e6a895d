"""A final request's scorecard: what the session's warm-ups did for it, in tokens and in time.

Fixed at submit (`ScoreSheet.at_submit`, before the warm-ups are settled): the final prompt
and `warmed_tokens`, the whole blocks of it the session believes cached (the planner's
belief: its warm-ups, and what an earlier final of the session left). Filled while the
question lasts: one `WarmSpan` per warm-up that landed. Scored once vLLM has answered the
final (`ScoreSheet.score`):

- `hit_tokens`: vLLM's own `prompt_tokens_details.cached_tokens` of the final request.
- `warm_prefill_tokens`: what the question's warm-ups made vLLM compute, Σ (prompt - cached).
- `wasted_prefill_tokens`: of those, the ones that did not serve this final. A warm-up
  computes the positions [its cached_tokens, its prompt tokens) of its prompt. Such a
  position served the final when the whole block holding it is one the final shares with
  that warm-up (the same tokens from the start through the end of that block) and one the
  final hit (the block ends within `hit_tokens`). The useful positions of one warm-up are
  then the interval [cached, min(shared blocks, hit blocks) * block size); `useful` is the
  size of the union of these intervals over the question's warm-ups (a position computed
  twice served once), and wasted = warm_prefill_tokens - useful, never below 0. It counts
  each warm-up's last partial block (never cached), blocks an edit replaced, positions a
  later warm-up computed again, and blocks evicted before the final came.
- `ttft_ms`, `cold_ttft_ms` (the TTFT a cold request of the final's prompt length would
  take, from the shared prefill-cost fit, `prefill_cost.py`; None until it has data) and
  `saved_ms` (cold - actual; None when either is).

Blocks are compared through chain hashes (each block's hash covers every token before it,
as vLLM's own block hashes do), so a span keeps one integer per block it computed, not its
prompt. A statistic, not a cache lookup: a hash collision would only miscount.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.core.engine.prefill_cost import PrefillCost
from orchestrator.core.engine.vllm_client import Usage
from orchestrator.core.frames import Scorecard
from orchestrator.core.planning.planner import WarmPlanner


def block_chain(tokens: Sequence[int], block_size: int) -> list[int]:
    """One hash per full block of `tokens`, each covering the blocks before it."""
    chain, link = [], 0
    for end in range(block_size, len(tokens) + 1, block_size):
        link = hash((link, tuple(tokens[end - block_size : end])))
        chain.append(link)
    return chain


@dataclass(frozen=True)
class WarmSpan:
    """What one landed warm-up made vLLM compute: positions [cached, prompt) of its prompt."""

    cached: int
    prompt: int
    first_block: int  # the block holding position `cached`
    chain: tuple[int, ...]  # chain hashes of its full blocks from `first_block` on
    latency_ms: float | None  # gate passed to answer; None: not timed

    @classmethod
    def of(
        cls, tokens: Sequence[int], usage: Usage, block_size: int, latency_ms: float | None
    ) -> WarmSpan:
        first = usage.cached_tokens // block_size
        chain = tuple(block_chain(tokens, block_size)[first:])
        return cls(usage.cached_tokens, usage.prompt_tokens, first, chain, latency_ms)

    @property
    def computed(self) -> int:
        return max(0, self.prompt - self.cached)

    def useful_end(self, final_chain: Sequence[int], hit_blocks: int) -> int:
        """The end (in blocks) of the prefix this span shares with the final and the final hit."""
        shared = self.first_block
        while (
            shared - self.first_block < len(self.chain)
            and shared < len(final_chain)
            and self.chain[shared - self.first_block] == final_chain[shared]
        ):
            shared += 1
        return min(shared, hit_blocks)


def useful_tokens(
    spans: Sequence[WarmSpan], final: Sequence[int], hit_tokens: int, block_size: int
) -> int:
    """Positions of `final` that some span computed and the final then hit (see the module
    docstring): the size of the union of the spans' useful intervals."""
    final_chain = block_chain(final, block_size)
    hit_blocks = hit_tokens // block_size
    intervals = sorted(
        (span.cached, span.useful_end(final_chain, hit_blocks) * block_size) for span in spans
    )
    useful, reached = 0, 0
    for start, end in intervals:
        start = max(start, reached)
        if end > start:
            useful += end - start
            reached = end
    return useful


@dataclass(frozen=True)
class ScoreSheet:
    """What a final request's scorecard needs, fixed at its submit."""

    tokens: Sequence[int]
    warmed_tokens: int
    block_size: int
    spans: list[WarmSpan] = field(default_factory=list)  # the warm stats' own list: it fills

    @classmethod
    def at_submit(
        cls, planner: WarmPlanner, tokens: Sequence[int], spans: list[WarmSpan]
    ) -> ScoreSheet:
        """Call before the warm-ups are settled; `spans` is the question's warm stats' list."""
        return cls(tokens, planner.believed_cached(tokens), planner.block_size, spans)

    def score(
        self, usage: Usage, ttft_ms: float | None, cost: PrefillCost, *, learn: bool = True
    ) -> Scorecard:
        """The scorecard; with `learn`, the question's warm-ups and the final (when it has a
        TTFT and vLLM reported its usage) teach `cost`, the final after its own estimate."""
        spent = sum(span.computed for span in self.spans)
        useful = useful_tokens(self.spans, self.tokens, usage.cached_tokens, self.block_size)
        if learn:
            for span in self.spans:
                if span.latency_ms is not None:
                    cost.observe(span.computed, span.latency_ms)
        cold = cost.estimate_ms(usage.prompt_tokens)
        if learn and ttft_ms is not None:
            cost.observe(usage.prompt_tokens - usage.cached_tokens, ttft_ms)
        return Scorecard.of(
            warmed_tokens=self.warmed_tokens,
            hit_tokens=usage.cached_tokens,
            warm_prefill_tokens=spent,
            wasted_prefill_tokens=max(0, spent - useful),
            ttft_ms=ttft_ms,
            cold_ttft_ms=cold,
        )
