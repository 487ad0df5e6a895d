"""The warmer's state: a submit's hold and a warm-up giving way, each undone on its own."""

from __future__ import annotations

import pytest

from orchestrator.core.warming.warmer import WarmerState

OPEN, HELD = WarmerState.OPEN, WarmerState.HELD
GIVING_WAY, HELD_GIVING_WAY = WarmerState.GIVING_WAY, WarmerState.HELD_GIVING_WAY


@pytest.mark.parametrize(
    ("state", "holds", "gives_way"),
    [(OPEN, False, False), (HELD, True, False), (GIVING_WAY, False, True),
     (HELD_GIVING_WAY, True, True)],
)  # fmt: skip
def test_each_state_says_what_it_holds(state: WarmerState, holds: bool, gives_way: bool) -> None:
    assert (state.holds, state.gives_way) == (holds, gives_way)
    assert WarmerState.of(holds, gives_way) is state


@pytest.mark.parametrize(
    ("state", "step", "after"),
    [(OPEN, "hold", HELD), (HELD, "release", OPEN),
     (OPEN, "give_way", GIVING_WAY), (GIVING_WAY, "run_ended", OPEN),
     (GIVING_WAY, "hold", HELD_GIVING_WAY), (HELD_GIVING_WAY, "release", GIVING_WAY),
     (HELD, "give_way", HELD_GIVING_WAY), (HELD_GIVING_WAY, "run_ended", HELD),
     (OPEN, "release", OPEN), (HELD, "hold", HELD)],  # a second call changes nothing
)  # fmt: skip
def test_a_hold_and_a_give_way_come_and_go_independently(
    state: WarmerState, step: str, after: WarmerState
) -> None:
    assert getattr(state, step)() is after
