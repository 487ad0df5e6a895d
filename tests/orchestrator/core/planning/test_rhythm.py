"""A typing pause is long for this typist: its own rhythm, never below the minimum."""

from __future__ import annotations

import pytest

from orchestrator.core.planning.rhythm import MIN_INTERVALS, TypingRhythm


def typed(rhythm: TypingRhythm, intervals: list[float], start: float = 100.0) -> None:
    now = start
    rhythm.keystroke(now)
    for interval in intervals:
        now += interval
        rhythm.keystroke(now)


def test_the_minimum_holds_until_the_rhythm_is_known() -> None:
    rhythm = TypingRhythm(0.4, 2.5)
    assert rhythm.pause_s() == 0.4
    typed(rhythm, [0.3] * (MIN_INTERVALS - 1))
    assert rhythm.pause_s() == 0.4


def test_a_slow_typist_needs_a_longer_pause_a_fast_one_the_minimum() -> None:
    slow, fast = TypingRhythm(0.4, 2.5), TypingRhythm(0.4, 2.5)
    typed(slow, [0.3, 0.25, 0.35, 0.3, 0.28, 0.32, 0.3, 2.0])  # one long gap: the median holds
    typed(fast, [0.08] * 10)
    assert slow.pause_s() == pytest.approx(2.5 * 0.3)
    assert fast.pause_s() == 0.4


def test_breaks_say_nothing_of_the_rhythm_and_factor_zero_is_the_fixed_minimum() -> None:
    rhythm = TypingRhythm(0.4, 2.5)
    typed(rhythm, [60.0] * 10)  # one key a minute: no rhythm at all
    assert rhythm.pause_s() == 0.4
    fixed = TypingRhythm(0.4, 0.0)
    typed(fixed, [0.5] * 10)
    assert fixed.pause_s() == 0.4
