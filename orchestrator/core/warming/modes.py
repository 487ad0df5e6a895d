"""What a session warms, chosen once at `start` (the `warmups` field of the start frame).

- `keystroke`: the context at start, then the stable part of the text as it is typed, and the
  submit-ready prompt when typing pauses (the full planner);
- `context`: only the context (system prompt, schema, history) at start;
- `off`: nothing at all (the cold baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.frames import WarmupMode


@dataclass(frozen=True)
class WarmStrategy:
    name: WarmupMode
    warms: bool  # sends any warm-up at all
    follows_typing: bool  # warms as the text is typed, and when typing pauses

    def warm_text(self, text: str) -> str | None:
        """The typed text a warm-up follows (its stable part is warmed after the context): the
        text itself, or "" for the context alone; None: no warm-up."""
        if not self.warms:
            return None
        return text if self.follows_typing else ""


STRATEGIES: dict[WarmupMode, WarmStrategy] = {
    "keystroke": WarmStrategy("keystroke", warms=True, follows_typing=True),
    "context": WarmStrategy("context", warms=True, follows_typing=False),
    "off": WarmStrategy("off", warms=False, follows_typing=False),
}
