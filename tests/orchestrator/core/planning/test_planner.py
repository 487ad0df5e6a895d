"""The pure warm-up planner (core/planning/planner.py), with a fake tokenizer of one token per
character."""

from __future__ import annotations

import random

import pytest

from orchestrator.core.planning.planner import (
    WarmPlanner,
    WarmUp,
    common_prefix_len,
    usable_blocks,
    valid_blocks,
)
from orchestrator.core.planning.stable import before_last_word

B = 4
TEMPLATE = "<u>"  # what the fake chat template puts before the user's text
HEADER = "</u><a>"  # the fake assistant header (7 tokens: more than one block of 4)


def toks(text: str) -> list[int]:
    """Fake tokenizer: one token per character."""
    return [ord(c) for c in text]


def render_input(typed: str) -> list[int]:
    """What the session feeds on_input: the template up to the stable prefix."""
    return toks(TEMPLATE + before_last_word(typed))


def render_submit(typed: str) -> list[int]:
    """What the session feeds on_pause: the whole submit-ready prompt."""
    return toks(TEMPLATE + typed + HEADER)


def type_chars(planner: WarmPlanner, text: str, *, complete: bool) -> list[WarmUp]:
    """Feed raw token prefixes of `text` one character at a time; optionally finish each warm."""
    sent: list[WarmUp] = []
    for i in range(1, len(text) + 1):
        warm = planner.on_input(toks(text[:i]), seq=i)
        if warm is not None:
            sent.append(warm)
            if complete:
                assert planner.on_warm_done(warm, ok=True) is None
    return sent


# --- helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "block", "expected"),
    [
        (0, 4, 0),
        (1, 4, 0),
        (4, 4, 0),  # the last token is recomputed, so a full block alone is not reusable
        (5, 4, 1),
        (8, 4, 1),
        (9, 4, 2),
        (1, 1, 0),
        (2, 1, 1),
        (16, 8, 1),
        (17, 8, 2),
    ],
)
def test_usable_blocks(n: int, block: int, expected: int) -> None:
    assert usable_blocks(n, block) == expected


def test_block_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="block_size"):
        usable_blocks(5, 0)
    with pytest.raises(ValueError, match="block_size"):
        WarmPlanner(0)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([], [], 0),
        ([1, 2], [], 0),
        ([1, 2, 3], [1, 2, 3], 3),
        ([1, 2, 3], [1, 2], 2),
        ([1, 2], [1, 2, 3], 2),
        ([1, 2, 3], [1, 9, 3], 1),
        ([9], [1], 0),
    ],
)
def test_common_prefix_len(a: list[int], b: list[int], expected: int) -> None:
    assert common_prefix_len(a, b) == expected
    assert common_prefix_len(tuple(a), b) == expected


def test_valid_blocks() -> None:
    warmed = toks("abcdefghij")  # 10 tokens: 2 usable blocks
    assert valid_blocks(warmed, toks("abcdefghijklmnop"), B) == 2
    assert valid_blocks(warmed, toks("abcdefg"), B) == 1
    assert valid_blocks(warmed, toks("abXdefghij"), B) == 0
    assert valid_blocks((), toks("abcdefgh"), B) == 0


# --- the planner -------------------------------------------------------------------------


def test_typing_sends_one_warm_up_per_new_usable_block() -> None:
    planner = WarmPlanner(B)
    sent = type_chars(planner, "abcdefghijklmnopqr", complete=True)  # 18 chars
    assert [len(w.tokens) for w in sent] == [5, 9, 13, 17]
    assert [w.seq for w in sent] == [5, 9, 13, 17]
    assert not any(w.submit_ready for w in sent)
    assert planner.cached_tokens == 16
    assert planner.in_flight is None


def test_block_size_8() -> None:
    planner = WarmPlanner(8)
    sent = type_chars(planner, "x" * 30, complete=True)
    assert [len(w.tokens) for w in sent] == [9, 17, 25]


def test_one_in_flight_and_coalescing() -> None:
    planner = WarmPlanner(B)
    first = planner.on_input(toks("abcde"), seq=1)
    assert first is not None
    assert planner.in_flight is first
    # Three inputs while in flight: each adds a block over the in-flight one, none is sent.
    assert planner.on_input(toks("abcdefghi"), seq=2) is None
    assert planner.on_input(toks("abcdefghij"), seq=3) is None
    assert planner.on_input(toks("abcdefghijklm"), seq=4) is None
    assert planner.in_flight is first
    nxt = planner.on_warm_done(first, ok=True)
    assert nxt == WarmUp(tuple(toks("abcdefghijklm")), seq=4, submit_ready=False)
    assert planner.in_flight is nxt
    assert planner.pending is None
    assert planner.on_warm_done(nxt, ok=True) is None
    assert planner.in_flight is None
    assert planner.cached_tokens == 12


def test_input_not_worth_it_while_in_flight_is_not_queued() -> None:
    planner = WarmPlanner(B)
    first = planner.on_input(toks("abcdefghi"), seq=1)  # 2 usable blocks
    assert first is not None
    assert planner.on_input(toks("abcdefghijklm"), seq=2) is None  # 3 blocks: pending
    assert planner.pending is not None
    # Backspacing to within what the in-flight warm-up covers supersedes the pending one.
    assert planner.on_input(toks("abcdefghij"), seq=3) is None
    assert planner.pending is None
    assert planner.on_warm_done(first, ok=True) is None


def test_pending_rechecked_after_done() -> None:
    planner = WarmPlanner(B)
    first = planner.on_input(toks("abcde"), seq=1)
    assert first is not None
    assert planner.on_input(toks("abcdefghi"), seq=2) is None
    nxt = planner.on_warm_done(first, ok=True)
    assert nxt is not None
    assert nxt.tokens == tuple(toks("abcdefghi"))


def test_backspaces_within_last_partial_block_send_nothing() -> None:
    planner = WarmPlanner(B)
    sent = type_chars(planner, "abcdefghijk", complete=True)  # 11 tokens
    assert [len(w.tokens) for w in sent] == [5, 9]
    assert planner.cached_tokens == 8
    for i in (10, 9):
        assert planner.on_input(toks("abcdefghijk"[:i]), seq=100 + i) is None
        assert planner.cached_tokens == 8
    # Retyping different characters in the partial block: nothing until a block is added.
    assert planner.on_input(toks("abcdefghiXY"), seq=200) is None
    assert planner.on_input(toks("abcdefghiXYZ"), seq=201) is None
    warm = planner.on_input(toks("abcdefghiXYZW"), seq=202)
    assert warm is not None
    assert len(warm.tokens) == 13


def test_edit_in_the_middle_moves_frontier_back_and_rewarms() -> None:
    planner = WarmPlanner(B)
    type_chars(planner, "abcdefghijklmnopq", complete=True)  # 17 tokens, 4 blocks
    assert planner.cached_tokens == 16
    edited = toks("abcdeXghijklmnopq")  # differs at index 5: only block 0 still hits
    warm = planner.on_input(edited, seq=50)
    assert planner.cached_tokens == 4
    assert warm is not None
    assert warm.tokens == tuple(edited)
    assert planner.on_warm_done(warm, ok=True) is None
    assert planner.cached_tokens == 16
    # The same edited text again is already warmed.
    assert planner.on_input(edited, seq=51) is None


def test_edit_in_first_block() -> None:
    planner = WarmPlanner(B)
    type_chars(planner, "abcdefghi", complete=True)
    assert planner.cached_tokens == 8
    warm = planner.on_input(toks("Xbcdefghi"), seq=9)
    assert planner.cached_tokens == 0
    assert warm is not None


def test_paste_sends_one_warm_up() -> None:
    planner = WarmPlanner(B)
    text = toks("select the ten customers with the highest lifetime spend")
    warm = planner.on_input(text, seq=1)
    assert warm is not None
    assert warm.tokens == tuple(text)
    assert planner.on_input(text, seq=2) is None
    assert planner.on_warm_done(warm, ok=True) is None
    assert planner.cached_tokens == usable_blocks(len(text), B) * B


def test_pause_sends_submit_ready_prompt_once() -> None:
    planner = WarmPlanner(B)
    typed = "count all users"
    w1 = planner.on_input(render_input(typed), seq=1)  # "<u>count all"
    assert w1 is not None
    assert planner.on_warm_done(w1, ok=True) is None
    pause = planner.on_pause(render_submit(typed), seq=1)
    assert pause is not None
    assert pause.submit_ready
    assert pause.tokens == tuple(render_submit(typed))
    assert planner.on_warm_done(pause, ok=True) is None
    assert planner.cached_tokens == usable_blocks(len(render_submit(typed)), B) * B
    # A second pause with nothing new sends nothing.
    assert planner.on_pause(render_submit(typed), seq=2) is None
    assert planner.in_flight is None


def test_second_pause_while_first_in_flight_sends_nothing() -> None:
    planner = WarmPlanner(B)
    pause = planner.on_pause(render_submit("hello there"), seq=1)
    assert pause is not None
    assert planner.on_pause(render_submit("hello there"), seq=2) is None
    assert planner.on_warm_done(pause, ok=True) is None


def test_pause_adding_less_than_a_block_sends_nothing() -> None:
    planner = WarmPlanner(8)
    base = toks("abcdefghijklmnopq")  # 17 tokens: 2 usable blocks of 8
    warm = planner.on_input(base, seq=1)
    assert warm is not None
    planner.on_warm_done(warm, ok=True)
    assert planner.on_pause([*base, 1, 2, 3], seq=2) is None  # 20 tokens: still 2 blocks
    pause = planner.on_pause([*base, *range(1, 9)], seq=3)  # 25 tokens: 3 blocks
    assert pause is not None
    assert pause.submit_ready


def test_pause_while_input_warm_in_flight_is_queued() -> None:
    planner = WarmPlanner(B)
    typed = "show me the orders"
    w1 = planner.on_input(render_input(typed), seq=1)
    assert w1 is not None
    assert planner.on_pause(render_submit(typed), seq=1) is None
    nxt = planner.on_warm_done(w1, ok=True)
    assert nxt is not None
    assert nxt.submit_ready
    assert nxt.tokens == tuple(render_submit(typed))


def test_failed_warm_up_leaves_confirmed_unchanged() -> None:
    planner = WarmPlanner(B)
    w1 = planner.on_input(toks("abcde"), seq=1)
    assert w1 is not None
    planner.on_warm_done(w1, ok=True)
    w2 = planner.on_input(toks("abcdefghi"), seq=2)
    assert w2 is not None
    assert planner.on_warm_done(w2, ok=False) is None
    assert planner.in_flight is None
    assert planner.confirmed == tuple(toks("abcde"))
    assert planner.cached_tokens == 4
    # The same text is worth sending again, since it never landed.
    w3 = planner.on_input(toks("abcdefghi"), seq=3)
    assert w3 is not None
    assert w3.tokens == w2.tokens


def test_a_failed_warm_up_promotes_nothing_and_warming_goes_on() -> None:
    planner = WarmPlanner(B)
    w1 = planner.on_input(toks("abcdefghi"), seq=1)
    assert w1 is not None
    assert planner.on_input(toks("abcdefghijklm"), seq=2) is None  # pending
    # The caller backs off after a failure: nothing may be marked in flight unsent.
    assert planner.on_warm_done(w1, ok=False) is None
    assert planner.in_flight is None
    assert planner.pending is None
    assert planner.confirmed == ()
    # Once the caller offers the current text again (input or retry), it is sent.
    again = planner.on_input(toks("abcdefghijklmn"), seq=3)
    assert again is not None
    assert again.seq == 3
    assert planner.in_flight is again


def test_stale_done_is_ignored() -> None:
    planner = WarmPlanner(B)
    w1 = planner.on_input(toks("abcde"), seq=1)
    assert w1 is not None
    lookalike = WarmUp(w1.tokens, w1.seq, w1.submit_ready)
    assert planner.on_warm_done(lookalike, ok=True) is None
    assert planner.in_flight is w1
    assert planner.confirmed == ()
    assert planner.on_warm_done(w1, ok=True) is None
    # Reported twice: the second is stale.
    assert planner.on_warm_done(w1, ok=False) is None
    assert planner.confirmed == w1.tokens


def test_done_after_reset_is_ignored() -> None:
    planner = WarmPlanner(B)
    w1 = planner.on_input(toks("abcde"), seq=1)
    assert w1 is not None
    assert planner.on_input(toks("abcdefghi"), seq=2) is None
    planner.reset()
    assert planner.in_flight is None
    assert planner.pending is None
    assert planner.cached_tokens == 0
    assert planner.on_warm_done(w1, ok=True) is None
    assert planner.confirmed == ()
    w2 = planner.on_input(toks("abcde"), seq=1)
    assert w2 is not None


def test_cached_tokens_after_edits() -> None:
    planner = WarmPlanner(B)
    assert planner.cached_tokens == 0
    type_chars(planner, "abcdefghijklm", complete=True)  # 13 tokens: 3 blocks
    assert planner.cached_tokens == 12
    planner.on_input(toks("abcdefghijklmno"), seq=1)  # longer, not a new block
    assert planner.cached_tokens == 12
    planner.on_input(toks("abcdefghijk"), seq=2)  # backspace into block 2
    assert planner.cached_tokens == 8
    planner.on_input(toks("abcdefgXijk"), seq=3)  # edit inside block 1
    assert planner.cached_tokens == 4


def test_word_by_word_typing_warms_only_stable_prefixes() -> None:
    planner = WarmPlanner(B)
    typed = "list the five biggest customers by revenue"
    final = tuple(render_submit(typed))
    sent: list[WarmUp] = []
    for i in range(1, len(typed) + 1):
        warm = planner.on_input(render_input(typed[:i]), seq=i)
        if warm is not None:
            sent.append(warm)
            planner.on_warm_done(warm, ok=True)
    assert sent
    for warm in sent:
        text = "".join(map(chr, warm.tokens))
        assert text.startswith(TEMPLATE)
        assert not text.endswith(" ")
        assert final[: len(warm.tokens)] == warm.tokens  # a prefix of the final prompt
        assert typed[len(text) - len(TEMPLATE)] == " "  # ends at a whole word
    pause = planner.on_pause(final, seq=len(typed))
    assert pause is not None
    assert pause.submit_ready


# --- property-style ----------------------------------------------------------------------


class Harness:
    """The test's own model of one session: what landed, and what is outstanding."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.planner = WarmPlanner(block)
        self.confirmed: tuple[int, ...] = ()
        self.outstanding: WarmUp | None = None

    def accept(self, warm: WarmUp | None) -> None:
        if warm is None:
            return
        assert self.outstanding is None, "two warm-ups in flight"
        have = valid_blocks(self.confirmed, warm.tokens, self.block)
        assert usable_blocks(len(warm.tokens), self.block) >= have + 1, "warm-up adds no block"
        self.outstanding = warm

    def finish(self, ok: bool) -> None:
        assert self.outstanding is not None
        done, self.outstanding = self.outstanding, None
        if ok:
            self.confirmed = done.tokens
        self.accept(self.planner.on_warm_done(done, ok))

    def check(self) -> None:
        planner = self.planner
        assert planner.in_flight is self.outstanding
        assert planner.confirmed == self.confirmed
        if planner.pending is not None:
            assert planner.in_flight is not None
        assert planner.cached_tokens % self.block == 0
        assert planner.cached_tokens < max(len(self.confirmed), 1)


def test_random_typing_invariants() -> None:
    rng = random.Random(20240601)
    alphabet = "abc "
    for block in (1, 2, 4, 8):
        for _ in range(60):
            h = Harness(block)
            text = ""
            for seq in range(200):
                roll = rng.random()
                if roll < 0.55:
                    text += rng.choice(alphabet)
                    h.accept(h.planner.on_input(toks(text), seq))
                elif roll < 0.75:
                    text = text[:-1]
                    h.accept(h.planner.on_input(toks(text), seq))
                elif roll < 0.8 and text:
                    i = rng.randrange(len(text))
                    text = text[:i] + rng.choice(alphabet) + text[i + 1 :]
                    h.accept(h.planner.on_input(toks(text), seq))
                elif roll < 0.85:
                    h.accept(h.planner.on_pause(toks(text + "#"), seq))
                elif h.outstanding is not None:
                    h.finish(ok=rng.random() < 0.85)
                h.check()


def test_random_appending_sends_at_most_once_per_block_boundary() -> None:
    rng = random.Random(12345)
    for block in (1, 3, 4, 8):
        for _ in range(50):
            planner = WarmPlanner(block)
            text = "".join(rng.choice("xyz ") for _ in range(rng.randrange(1, 120)))
            outstanding: WarmUp | None = None
            sent: list[WarmUp] = []
            i = 0
            while i < len(text) or outstanding is not None:
                if outstanding is not None and (i >= len(text) or rng.random() < 0.3):
                    outstanding = planner.on_warm_done(outstanding, ok=True)
                    if outstanding is not None:
                        sent.append(outstanding)
                    continue
                step = rng.choice((1, 1, 1, 2, 5))  # mostly one char, sometimes a paste
                i = min(len(text), i + step)
                warm = planner.on_input(toks(text[:i]), seq=i)
                if warm is not None:
                    assert outstanding is None
                    outstanding = warm
                    sent.append(warm)
            blocks = [usable_blocks(len(w.tokens), block) for w in sent]
            assert blocks == sorted(set(blocks)), "a block boundary was warmed twice"
            assert all(b >= 1 for b in blocks)
            for w in sent:
                assert w.tokens == tuple(toks(text[: len(w.tokens)]))
            assert len(sent) <= usable_blocks(len(text), block)
            final = usable_blocks(len(text), block)
            assert planner.cached_tokens == final * block
