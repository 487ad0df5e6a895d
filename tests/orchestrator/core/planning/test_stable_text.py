"""The stable prefix against the real tokenizer: a warm-up's ids are a prefix of the final's."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator.core.planning.planner import common_prefix_len, valid_blocks
from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.core.planning.stable import StableText, before_last_word

PIECES = [
    "show", "me", "the", "orders", "Don", "'", "'t", "'s", "'ll", "it", "I", "silver", ")",
    "?", "!", ".", "...", ",", ";", ":", '"', "gold", "(", "[", "]", "{", "}", "-", "--", "_",
    "/", "*", "=", "<=", ">", "42", "3.14", "2026-12-01", "1,000", "x2", "SELECT", "FROM",
    "WHERE", "count(*)", "a.id", "'AT'", "GROUP BY", "def", "f(x):", "return", "x**2", "#",
    "é", "ü", "ß", "中文", "😀", "e\u0301", "\u00a0", "€", " ", "  ", "   ", "\n", "\n\n",
    "\t", " \n ", "naïve", "Renée", "https://example.com/a?b=c",
]  # fmt: skip
texts = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)


@pytest.fixture(scope="module")
def stable(renderer: PromptRenderer) -> StableText:
    return StableText(renderer.tokenizer, renderer.encode)


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(typed=texts, more=texts)
@example(typed="silver)", more="?")
@example(typed="Don'", more="t go")
@example(typed="Wait.", more="..")
@example(typed='"gold"', more=",")
@example(typed="it", more="'s")
@example(typed="a  ", more="b")
@example(typed="x \n", more="\n y")
def test_the_stable_prefix_is_a_token_prefix_of_whatever_follows(
    stable: StableText, renderer: PromptRenderer, typed: str, more: str
) -> None:
    prefix, ids = stable.split(typed)
    assert typed.startswith(prefix)
    assert renderer.decode(ids) == prefix  # the ids are those of the prefix itself
    final = renderer.encode(typed + more)
    assert final[: len(ids)] == ids, (typed, more, prefix)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(typed=texts, cut=st.integers(0, 40), pasted=texts)
def test_an_edit_in_the_middle_counts_no_block_past_the_first_difference(
    stable: StableText, renderer: PromptRenderer, typed: str, cut: int, pasted: str
) -> None:
    head = renderer.encode("<|im_start|>system\nYou answer.<|im_end|>\n<|im_start|>user\n")
    warmed = head + stable.split(typed)[1]
    edited = typed[: min(cut, len(typed))] + pasted  # backspaces, then other text pasted
    final = head + renderer.encode(edited + "<|im_end|>\n<|im_start|>assistant\n")
    for block in (1, 4, 16, 32):
        hit = valid_blocks(warmed, final, block) * block
        assert hit <= common_prefix_len(warmed, final)
        assert warmed[:hit] == final[:hit]


def test_the_stable_prefix_stops_before_the_word_being_typed(stable: StableText) -> None:
    assert stable.prefix("show me the") == "show me"
    assert stable.prefix("show me the ") == "show me the"
    assert stable.prefix("orders?") == "orders"  # `?` may still become `?)` or `??`
    assert stable.prefix("Don'") == "Don"
    assert stable.prefix("") == ""
    assert stable.prefix("word") == ""


class NoPreTokenizer:
    """A tokenizer without a Rust pre-tokenizer: the checked whitespace rule applies."""


def test_the_fallback_rule_is_checked_in_token_space(renderer: PromptRenderer) -> None:
    fallback = StableText(NoPreTokenizer(), renderer.encode)
    assert fallback.pre_tokenize is None
    assert fallback.prefix("show me the") == "show me"
    assert fallback.prefix("one") == ""
    assert before_last_word("a b  c") == "a b"
    calls: list[str] = []

    def shifting(text: str) -> list[int]:  # a word changes its ids once another follows
        calls.append(text)
        return [len(word) + (100 if i < len(text.split()) - 1 else 0)
                for i, word in enumerate(text.split())]  # fmt: skip

    assert StableText(NoPreTokenizer(), shifting).prefix("ab cd ef") == ""
    assert calls  # it checked before deciding
