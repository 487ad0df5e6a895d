"""Seeded input replays: how a person enters a question, event by event.

Two replays, both reproducible (same seed, same text: same events):

- ``typing``: one keystroke at a time. Inter-key intervals are log-normal with a mean of
  240 ms and a right-skewed spread; about 6% of letter keystrokes are a wrong character,
  removed with backspace after a moment. Source: Dhakal, Feit, Kristensson and Oulasvirta,
  "Observations on Typing from 136 Million Keystrokes", CHI 2018 (168,000 volunteers: about
  52 WPM, mean inter-key interval near 240 ms, roughly 6% corrections).
- ``dictation``: whole words at once, as a speech-to-text box fills in, at about 150 words per
  minute with a log-normal spread. Source: Ruan, Wobbrock, Liou, Ng and Landay, "Comparing
  Speech and Keyboard Text Entry for Short Messages", 2016 (English speech input at about
  150-160 WPM, three times typing).

``speedup`` divides every interval (recorded in the report: real typing of a long input takes
minutes). The submit comes after the last event by :func:`submit_delay`: ``enter`` is one more
interval drawn from the same distribution (the Enter key, too soon for a typing pause), a number
is that many seconds (never scaled).
"""

from __future__ import annotations

import math
import random
import re
import string
from dataclasses import asdict, dataclass
from typing import Any, Literal

ReplayKind = Literal["typing", "dictation"]
REPLAYS: tuple[ReplayKind, ...] = ("typing", "dictation")


@dataclass(frozen=True)
class Distribution:
    """A replay's event intervals: log-normal with this mean (seconds) and log-spread."""

    kind: ReplayKind
    mean_interval_s: float
    sigma: float
    correction_rate: float
    source: str

    def draw(self, rng: random.Random) -> float:
        mu = math.log(self.mean_interval_s) - self.sigma**2 / 2  # so that the mean is as set
        return rng.lognormvariate(mu, self.sigma)


TYPING = Distribution(
    "typing", 0.240, 0.5, 0.06, "Dhakal et al., CHI 2018: 136M keystrokes, 168,000 typists"
)
DICTATION = Distribution(
    "dictation", 60 / 150, 0.3, 0.0, "Ruan et al., 2016: English speech input about 150 WPM"
)
DISTRIBUTIONS: dict[ReplayKind, Distribution] = {"typing": TYPING, "dictation": DICTATION}


@dataclass(frozen=True)
class Keystroke:
    delay_s: float  # wait before this event
    text: str  # the whole input after it


@dataclass(frozen=True)
class SubmitPause:
    """When the submit comes: ``enter`` (one drawn interval) or a fixed number of seconds."""

    seconds: float | None  # None: enter

    @classmethod
    def parse(cls, value: str) -> SubmitPause:
        if value.strip().lower() == "enter":
            return cls(None)
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"submit pause {value!r}: use 'enter' or seconds") from None
        if not 0 <= seconds <= 600:
            raise ValueError(f"submit pause {value!r}: seconds must be within 0..600")
        return cls(seconds)

    @property
    def label(self) -> str:
        return "enter" if self.seconds is None else f"{self.seconds:g}s"


ENTER = SubmitPause(None)


@dataclass(frozen=True)
class Replay:
    """One replay setting of a run: which distribution, how much faster, when to submit."""

    kind: ReplayKind = "typing"
    speedup: float = 1.0
    submit_pause: SubmitPause = ENTER

    def __post_init__(self) -> None:
        if not self.speedup > 0:
            raise ValueError(f"typing speed-up must be positive, got {self.speedup}")

    @property
    def distribution(self) -> Distribution:
        return DISTRIBUTIONS[self.kind]

    def events(self, text: str, seed: int) -> list[Keystroke]:
        rng = random.Random(f"{seed}:{self.kind}:{text}")
        strokes = dictated(text, rng) if self.kind == "dictation" else typed(text, rng)
        return [Keystroke(s.delay_s / self.speedup, s.text) for s in strokes]

    def submit_delay(self, text: str, seed: int) -> float:
        if self.submit_pause.seconds is not None:
            return self.submit_pause.seconds
        rng = random.Random(f"{seed}:{self.kind}:submit:{text}")
        return self.distribution.draw(rng) / self.speedup

    def seconds(self, text: str, seed: int) -> float:
        """Wall time from the first event to the submit."""
        return sum(e.delay_s for e in self.events(text, seed)) + self.submit_delay(text, seed)

    def settings(self) -> dict[str, Any]:
        return {
            "replay": self.kind,
            "typing_distribution": asdict(self.distribution),
            "typing_speedup": self.speedup,
            "submit_pause": self.submit_pause.label,
        }


def typed(text: str, rng: random.Random) -> list[Keystroke]:
    """The keystrokes that type `text`, corrections included."""
    draw, typed_so_far, strokes = TYPING.draw, "", []
    for char in text:
        if char.isalpha() and rng.random() < TYPING.correction_rate:
            wrong = rng.choice(string.ascii_lowercase)
            strokes.append(Keystroke(draw(rng), typed_so_far + wrong))
            strokes.append(Keystroke(draw(rng) * 1.5, typed_so_far))  # noticing takes a moment
        typed_so_far += char
        strokes.append(Keystroke(draw(rng), typed_so_far))
    return strokes


def dictated(text: str, rng: random.Random) -> list[Keystroke]:
    """Words (with the spaces before them) arriving one at a time at speech rate."""
    ends = [match.end() for match in re.finditer(r"\s*\S+", text)]
    if not ends or ends[-1] != len(text):
        ends.append(len(text))
    return [Keystroke(DICTATION.draw(rng), text[:end]) for end in ends]


def keystrokes(text: str, seed: int) -> list[Keystroke]:
    """The default replay's keystrokes (typing at real speed)."""
    return Replay().events(text, seed)
