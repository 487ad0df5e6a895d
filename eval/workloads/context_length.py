"""A long-input workload's system prompt brought to a token target: cut, or repeated.

The long-context dataset (`datasets/library-context`) is about 7,700 tokens of documents. To
measure a prompt of another length (1k on a CPU, 8k and 32k on a GPU), its text is cut at a
word boundary, or its copies are joined by a blank line and then cut, until the served
tokenizer counts about the target (within 2%). Repeated text is still new text for the prefix
cache: a block's hash chains every token before it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable

from eval.workloads.workload import Workload
from orchestrator.errors import SetupError

TokenCounter = Callable[[str], Awaitable[int]]
SEPARATOR = "\n\n"
TOLERANCE = 0.02
TRIES = 5


def stretched(text: str, chars: int) -> str:
    """`text` cut to about `chars` characters (at whitespace), or copies of it joined by a
    blank line and cut so."""
    body = text.strip()
    copies = max(1, math.ceil((chars + len(SEPARATOR)) / (len(body) + len(SEPARATOR))))
    joined = SEPARATOR.join([body] * copies)
    if len(joined) <= chars:
        return joined + "\n"
    cut = max(joined.rfind(" ", 0, chars), joined.rfind("\n", 0, chars))
    if cut < chars // 2:  # no whitespace near the end: cut where asked
        cut = chars
    return joined[:cut].rstrip() + "\n"


async def fit_to_tokens(text: str, tokens: int, count: TokenCounter) -> tuple[str, int]:
    """`text` stretched to about `tokens` tokens as `count` counts them; and its count."""
    if tokens < 1:
        raise SetupError(f"a context of {tokens} tokens: give a positive number")
    measured = await count(text)
    if measured < 1 or not text.strip():
        raise SetupError("an empty system prompt cannot be stretched to a token target")
    chars = len(text) * tokens / measured
    fitted, got = text, measured
    for _ in range(TRIES):
        fitted = stretched(text, max(1, round(chars)))
        got = await count(fitted)
        if abs(got - tokens) <= TOLERANCE * tokens:
            break
        chars *= tokens / max(got, 1)
    return fitted, got


async def with_context_tokens(
    workload: Workload, tokens: int, count: TokenCounter
) -> tuple[Workload, int]:
    """The long-input `workload` with its system prompt fit to about `tokens` tokens; the
    system prompt's own count."""
    if workload.kind != "long-input" or workload.system is None:
        raise SetupError(f"{workload.name}: only a long-input workload's context can be sized")
    system, got = await fit_to_tokens(workload.system, tokens, count)
    return dataclasses.replace(workload, system=system), got
