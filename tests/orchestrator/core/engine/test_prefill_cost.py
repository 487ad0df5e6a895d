"""The prefill-cost fit: a least-squares line over a bounded window, None when it says nothing."""

from __future__ import annotations

import pytest

from orchestrator.core.engine.prefill_cost import PrefillCost


def test_points_on_a_line_give_that_line_exactly() -> None:
    cost = PrefillCost()
    for tokens in (1, 32, 100, 640, 1850):
        cost.observe(tokens, 12.0 + 0.5 * tokens)
    line = cost.fit()
    assert line is not None
    assert line.intercept_ms == pytest.approx(12.0)
    assert line.ms_per_token == pytest.approx(0.5)
    assert cost.estimate_ms(2000) == pytest.approx(1012.0)


def test_noise_around_a_line_is_averaged_out() -> None:
    cost = PrefillCost()
    for tokens, noise in [(100, 3.0), (100, -3.0), (300, 5.0), (300, -5.0), (500, 0.0)]:
        cost.observe(tokens, 20.0 + 2.0 * tokens + noise)
    line = cost.fit()
    assert line is not None
    assert line.ms_per_token == pytest.approx(2.0)
    assert line.intercept_ms == pytest.approx(20.0)


def test_only_the_window_of_recent_points_counts() -> None:
    cost = PrefillCost(window=4)
    for tokens in (10, 20, 30, 40):
        cost.observe(tokens, 1000.0 + tokens)  # an engine that was slow, once
    for tokens in (10, 20, 30, 40):
        cost.observe(tokens, 3.0 * tokens)
    assert len(cost) == 4
    line = cost.fit()
    assert line is not None
    assert line.intercept_ms == pytest.approx(0.0, abs=1e-9)
    assert line.ms_per_token == pytest.approx(3.0)


def test_too_few_points_or_one_token_count_give_no_fit() -> None:
    cost = PrefillCost()
    assert cost.fit() is None
    assert cost.estimate_ms(100) is None
    cost.observe(64, 30.0)
    assert cost.fit() is None  # one point
    for latency in (10.0, 50.0, 90.0):
        cost.observe(64, latency)
    assert cost.fit() is None  # no spread in tokens: no slope
    cost.observe(128, 60.0)
    assert cost.fit() is not None


@pytest.mark.parametrize("latencies", [(50.0, 50.0, 50.0), (90.0, 50.0, 10.0)])
def test_latency_that_does_not_grow_with_tokens_gives_no_fit(
    latencies: tuple[float, float, float],
) -> None:
    cost = PrefillCost()
    for tokens, latency in zip((10, 100, 1000), latencies, strict=True):
        cost.observe(tokens, latency)
    assert cost.fit() is None
    assert cost.estimate_ms(500) is None


def test_an_estimate_is_never_below_zero_and_bad_points_are_ignored() -> None:
    cost = PrefillCost()
    cost.observe(100, 50.0)
    cost.observe(200, 150.0)  # -50 ms + 1 ms per token
    cost.observe(-5, 10.0)
    cost.observe(10, -1.0)
    assert len(cost) == 2
    assert cost.estimate_ms(10) == 0.0
    assert cost.estimate_ms(300) == pytest.approx(250.0)


def test_a_window_under_two_points_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        PrefillCost(window=1)
