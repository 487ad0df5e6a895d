"""A run's warm prefill from the engine's side (`kv_count.py`), per case and per mode.

Per salt: the blocks vLLM stored under it beyond its finals' own (`warm_prefill_tokens`), and of
those the ones past the context's blocks (`typed_warm_prefill_tokens`: the typed text's share,
never below 0 by construction but for event loss). The context's blocks are what a static
session's only warm-up stores: the most any static salt of the run stored; without a static
mode the typed share is unknown (None).
"""

from __future__ import annotations

from dataclasses import dataclass

from eval.engine.kv_count import Final, StoredBlocks
from eval.reports.results import CaseResult

CaseKey = tuple[str, str, int]  # mode label, case id, repeat


@dataclass(frozen=True)
class EngineWarm:
    warm_prefill_tokens: int
    typed_warm_prefill_tokens: int | None
    finals: int

    def as_dict(self) -> dict[str, int | float | str | None]:
        per_final = self.warm_prefill_tokens / self.finals if self.finals else None
        return {
            "source": "kv-events",
            "warm_prefill_tokens": self.warm_prefill_tokens,
            "warm_prefill_tokens_per_final": None if per_final is None else round(per_final, 1),
            "typed_warm_prefill_tokens": self.typed_warm_prefill_tokens,
        }


def key(result: CaseResult) -> CaseKey:
    return result.mode, result.case, result.repeat


def engine_warm(
    blocks: StoredBlocks, salts: dict[CaseKey, str], results: list[CaseResult], block_size: int
) -> tuple[dict[str, EngineWarm], dict[CaseKey, tuple[int, int | None]]]:
    """Per mode label, and per case where a case had a salt of its own."""
    finals: dict[str, list[Final]] = {}
    labels: dict[str, str] = {}
    for result in results:
        salt = salts.get(key(result))
        if salt is None or result.failure is not None:
            continue
        final = Final(result.prompt_tokens, result.cached_tokens, result.completion_tokens)
        finals.setdefault(salt, []).append(final)
        labels[salt] = result.mode
    warm = {salt: blocks.warm_tokens([salt], fs, block_size) for salt, fs in finals.items()}
    static = [warm[salt] for salt, label in labels.items() if label == "static"]
    context_blocks = max(static) // block_size if static else None
    typed: dict[str, int | None] = {
        salt: None
        if context_blocks is None
        else blocks.warm_tokens([salt], fs, block_size, context_blocks)
        for salt, fs in finals.items()
    }
    per_label: dict[str, EngineWarm] = {}
    for salt, label in labels.items():
        before = per_label.get(label, EngineWarm(0, 0 if context_blocks is not None else None, 0))
        typed_sum = None
        if before.typed_warm_prefill_tokens is not None and typed[salt] is not None:
            typed_sum = before.typed_warm_prefill_tokens + (typed[salt] or 0)
        per_label[label] = EngineWarm(
            before.warm_prefill_tokens + warm[salt], typed_sum, before.finals + len(finals[salt])
        )
    per_case = {
        k: (warm[salt], typed[salt])
        for k, salt in salts.items()
        if salt in finals and len(finals[salt]) == 1
    }
    return per_label, per_case
