"""Where typed text stops changing under the tokenizer: its stable prefix.

A warm-up must be a token prefix of the final prompt, so it may only cover text whose tokens
can no longer change, whatever the user types next. Byte-level BPE tokenizers (GPT-2, SmolLM,
Llama 3, Qwen) first split text into pre-tokens with a regex and merge only within one
pre-token. The regex decides each pre-token from the characters after it (one character of
look-ahead), so every pre-token but the LAST is final once a character follows it: typing on
can only extend or re-split the last one (`silver)` + `?` is one pre-token `)?`, `Don'` + `t`
turns `'` into `'t`, a run of spaces gives one up to the next word). The stable prefix is
therefore the text up to the start of its last pre-token, read from the tokenizer itself.

Its ids are taken from the ids of the WHOLE text (all but those of the last pre-token), not
from encoding the prefix alone: alone, the prefix's own last pre-token would lose its
look-ahead (`"\n\nshow"` splits its newlines one way, `"\n\n"` alone another).

Tokenizers without such a pre-tokenizer (or with a normalizer, which can rewrite text across
pre-tokens) fall back to a whitespace rule checked in token space: the candidate's ids must be
a prefix of the whole text's ids, or it steps back a word at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

PreTokenize = Callable[[str], list[tuple[str, tuple[int, int]]]]
Encode = Callable[[str], list[int]]
MAX_STEPS_BACK = 8
LAST_WORD = re.compile(r"\s*\S*$")


def last_pre_token_start(text: str, pre_tokenize: PreTokenize) -> int:
    """Offset where the text's last pre-token starts (0 for text of one pre-token)."""
    pieces = pre_tokenize(text)
    return pieces[-1][1][0] if len(pieces) > 1 else 0


def before_last_word(text: str) -> str:
    """The text without its last whitespace-separated word and the whitespace before it."""
    match = LAST_WORD.search(text)
    return text[: match.start()] if match else ""


class StableText:
    """The stable prefix of typed text for one tokenizer (see the module docstring)."""

    def __init__(self, tokenizer: Any, encode: Encode) -> None:
        self.encode = encode
        backend = getattr(tokenizer, "backend_tokenizer", None)
        pre = getattr(backend, "pre_tokenizer", None) if backend is not None else None
        normalizer = getattr(backend, "normalizer", None) if backend is not None else None
        self.pre_tokenize: PreTokenize | None = (
            pre.pre_tokenize_str if pre is not None and normalizer is None else None
        )

    def prefix(self, text: str) -> str:
        return self.split(text)[0]

    def split(self, text: str) -> tuple[str, list[int]]:
        """The stable prefix of `text` and its ids, which prefix the ids of `text` + anything."""
        if not text:
            return "", []
        if self.pre_tokenize is None:
            return self.checked_fallback(text)
        start = last_pre_token_start(text, self.pre_tokenize)
        if start == 0:
            return "", []
        full = self.encode(text)
        last = self.encode(text[start:])  # BPE merges within a pre-token only
        return text[:start], full[: len(full) - len(last)]

    def checked_fallback(self, text: str) -> tuple[str, list[int]]:
        full = self.encode(text)
        candidate = text
        for _ in range(MAX_STEPS_BACK):
            candidate = before_last_word(candidate)
            if not candidate:
                break
            ids = self.encode(candidate)
            if full[: len(ids)] == ids:
                return candidate, ids
        return "", []
