"""When each frame of a case goes, as offsets from the session's `ready`: the same for every mode.

A schedule is built once per case from the seeded replay, before any mode runs, and every mode
sends its frames at those offsets (not after sleeps that add up), so no mode gets untimed time
that another does not: the first input, every keystroke and the submit go at the same moment
after `ready` in cold, static, keystroke and oracle mode alike.

A paste-then-ask case first pastes its document in one input frame (one drawn interval after
`ready`, as a click and Ctrl-V would take), then types its question after it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from eval.workloads.replay import Replay

PASTE_SEPARATOR = "\n\n"  # between a pasted document and the question typed after it


@dataclass(frozen=True)
class Schedule:
    inputs: tuple[tuple[float, str], ...]  # (offset from ready in s, the whole input then)
    submit_s: float  # offset of the submit from ready
    final_text: str  # what is submitted

    @property
    def first_input_s(self) -> float | None:
        return self.inputs[0][0] if self.inputs else None

    @classmethod
    def of(cls, replay: Replay, text: str, seed: int, pasted: str = "") -> Schedule:
        """The schedule of typing `text` (after pasting `pasted`, when given)."""
        offset, inputs = 0.0, []
        prefix = ""
        if pasted:
            prefix = pasted + PASTE_SEPARATOR
            rng = random.Random(f"{seed}:{replay.kind}:paste:{text}")
            offset = replay.distribution.draw(rng) / replay.speedup
            inputs.append((offset, prefix))
        for event in replay.events(text, seed):
            offset += event.delay_s
            inputs.append((offset, prefix + event.text))
        submit_s = offset + replay.submit_delay(text, seed)
        return cls(tuple(inputs), submit_s, prefix + text)
