"""The order of a run: rounds of N typists, the modes (arms) interleaved, repeated R times.

A round is one group of N cases (one per typist) in one arm; every arm plays each group before
the next group starts, in an order that rotates from group to group, so a machine that slows
down halfway (these machines are shared) moves every mode alike instead of the one that ran
last. The whole plan is played `repeats` times, each repeat under fresh cache salts.

An arm says which mode each typist slot uses: one mode for all (`cold`, `static`, ...), or a
mixture (`mixed`: keystroke and cold typists taking turns; `mixed-speculate`: speculate and
cold) whose results are labelled `arm:mode` (`mixed:cold`, `mixed-speculate:speculate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Arm:
    name: str
    slots: tuple[str, ...]  # the mode of typist i is slots[i % len(slots)]

    @classmethod
    def of(cls, mode: str) -> Arm:
        return cls(mode, (mode,))

    @property
    def uniform(self) -> bool:
        return len(set(self.slots)) == 1

    def mode(self, typist: int) -> str:
        return self.slots[typist % len(self.slots)]

    def label(self, typist: int) -> str:
        """What the typist's results are reported under."""
        mode = self.mode(typist)
        return mode if self.uniform and self.name == mode else f"{self.name}:{mode}"

    def labels(self, typists: int) -> list[str]:
        return list(dict.fromkeys(self.label(i) for i in range(max(typists, len(self.slots)))))


MIXED = Arm("mixed", ("keystroke", "cold"))  # half the typists warm, half do not
MIXED_SPECULATE = Arm("mixed-speculate", ("speculate", "cold"))  # half also answer before Enter


@dataclass(frozen=True)
class Round(Generic[T]):
    index: int
    repeat: int
    arm: Arm
    cases: tuple[T, ...]  # case i goes to typist i


def rotated(items: Sequence[Arm], by: int) -> list[Arm]:
    shift = by % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


def rounds(cases: Sequence[T], arms: Sequence[Arm], typists: int, repeats: int) -> list[Round[T]]:
    """Every arm on every group of `typists` cases, `repeats` times, arms rotating per group."""
    typists = max(1, min(typists, len(cases)))
    found: list[Round[T]] = []
    group_index = 0
    for repeat in range(repeats):
        for start in range(0, len(cases), typists):
            group = tuple(cases[start : start + typists])
            for arm in rotated(arms, group_index):
                found.append(Round(len(found), repeat, arm, group))
            group_index += 1
    return found
