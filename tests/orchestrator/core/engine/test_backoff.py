"""The one exponential back-off (`core/engine/backoff.py`) and its two users: the engine
watch's pause of warm-ups and a session's own retry of a failed warm-up."""

from __future__ import annotations

import pytest

from orchestrator.core.engine.backoff import Backoff
from orchestrator.core.engine.watch import EngineWatch


def test_waits_double_after_each_failure_in_a_row_up_to_the_cap() -> None:
    backoff = Backoff(first_s=0.1, max_s=1.0)
    waits = [backoff.failed() for _ in range(6)]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_a_success_starts_over_from_the_first_wait() -> None:
    backoff = Backoff(first_s=0.25, max_s=5.0)
    backoff.failed()
    backoff.failed()
    backoff.succeeded()
    assert backoff.failed() == pytest.approx(0.25)


def test_jitter_lengthens_a_wait_by_the_drawn_fraction_at_most() -> None:
    bounds: list[tuple[float, float]] = []

    def draw(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    backoff = Backoff(first_s=0.25, max_s=5.0, jitter=0.5, draw=draw)
    assert backoff.failed() == pytest.approx(0.375)
    assert bounds == [(1.0, 1.5)]


def test_without_jitter_nothing_is_drawn() -> None:
    def draw(low: float, high: float) -> float:
        raise AssertionError("no jitter asked for")

    assert Backoff(first_s=1.0, max_s=2.0, draw=draw).failed() == 1.0


def test_a_long_run_of_failures_stays_at_the_cap() -> None:
    backoff = Backoff(first_s=0.1, max_s=5.0)
    for _ in range(2000):  # 0.1 * 2**1999 would overflow a float
        wait = backoff.failed()
    assert wait == 5.0


@pytest.mark.parametrize(
    ("first_s", "max_s", "jitter"), [(0.0, 1.0, 0.0), (2.0, 1.0, 0.0), (0.1, 1.0, -0.5)]
)
def test_an_impossible_back_off_is_refused(first_s: float, max_s: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="back-off"):
        Backoff(first_s, max_s, jitter)


def test_the_engine_watch_pauses_warmups_for_the_backoff_and_resumes_on_success() -> None:
    now = [100.0]
    watch = EngineWatch(max_warmups_in_flight=4, clock=lambda: now[0])
    watch.backoff.draw = lambda low, high: low  # no jitter: the waits are exact
    assert watch.try_start_warmup()
    watch.finish_warmup(False)
    assert watch.pause_s() == pytest.approx(0.25)
    assert not watch.try_start_warmup()
    now[0] += 0.25
    assert watch.try_start_warmup()
    watch.finish_warmup(False)
    assert watch.pause_s() == pytest.approx(0.5)  # twice as long: two failures in a row
    watch.succeeded()
    assert watch.pause_s() == 0.0
    watch.failed()
    assert watch.pause_s() == pytest.approx(0.25)  # a success started it over
