"""Seeded typing replay: how a person types a question, keystroke by keystroke.

Inter-key intervals are drawn from a log-normal with a mean near 240 ms (desktop typing,
Dhakal et al., CHI 2018); about 6% of keystrokes are a wrong character later removed with
backspace; a short pause comes before submit. Same seed, same question: same keystrokes.
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass

MEAN_INTERVAL_S = 0.240
SIGMA = 0.5  # spread of log-intervals: right-skewed like measured typing
CORRECTION_RATE = 0.06
PAUSE_BEFORE_SUBMIT_S = 0.8


@dataclass(frozen=True)
class Keystroke:
    delay_s: float  # wait before this keystroke
    text: str  # the whole input after it


def interval(rng: random.Random) -> float:
    mu = math.log(MEAN_INTERVAL_S) - SIGMA**2 / 2  # so that the mean is MEAN_INTERVAL_S
    return rng.lognormvariate(mu, SIGMA)


def keystrokes(question: str, seed: int) -> list[Keystroke]:
    """The keystrokes that type `question`, corrections included."""
    rng = random.Random(f"{seed}:{question}")
    typed = ""
    strokes: list[Keystroke] = []
    for char in question:
        if char.isalpha() and rng.random() < CORRECTION_RATE:
            wrong = rng.choice(string.ascii_lowercase)
            strokes.append(Keystroke(interval(rng), typed + wrong))
            strokes.append(Keystroke(interval(rng) * 1.5, typed))  # noticing takes a moment
        typed += char
        strokes.append(Keystroke(interval(rng), typed))
    return strokes


def typing_seconds(strokes: list[Keystroke]) -> float:
    return sum(stroke.delay_s for stroke in strokes) + PAUSE_BEFORE_SUBMIT_S
