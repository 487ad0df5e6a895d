"""Finals first: while a final request waits for its first token, warm-ups step aside.

vLLM's priority scheduling orders its waiting queue only: a warm-up that is already running
keeps its share of every engine step, and the final request waits behind it (measured on CPU
with 4 typists: finals at 16-23 s against 0.4 s alone). So when a final request starts:

- warm-ups already sent by other sessions are preempted: their HTTP requests are cancelled and
  vLLM aborts them between two steps. The full blocks they computed stay in the prefix cache;
  their sessions send them again once the final has its first token (`Preemptible.preempt`);
- new warm-ups wait (`wait_turn`) until no final request is before its first token.

A session's own warm-up is not preempted here: its final request decides about it
(`Warmer.settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol


class Preemptible(Protocol):
    """A warm-up sender that can give way to a final request."""

    @property
    def name(self) -> str: ...

    def preempt(self) -> None: ...


class FinalsFirst:
    def __init__(self, preempt: bool = True) -> None:
        self.preempt = preempt
        self.before_first_token = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.sent: dict[int, Preemptible] = {}  # warm-ups sent to vLLM, by id() of the sender
        self.preempted = 0

    def track(self, sender: Preemptible) -> None:
        self.sent[id(sender)] = sender

    def untrack(self, sender: Preemptible) -> None:
        self.sent.pop(id(sender), None)

    def final_started(self, owner: str | None) -> Callable[[], None]:
        """A final request (of session `owner`, or None) is about to be sent; call the returned
        function once, when its first token arrives or it ends."""
        self.before_first_token += 1
        self.idle.clear()
        if self.preempt:
            for sender in list(self.sent.values()):
                if sender.name != owner:
                    self.untrack(sender)
                    self.preempted += 1
                    sender.preempt()
        done = False

        def first_token() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.before_first_token -= 1
            if self.before_first_token == 0:
                self.idle.set()

        return first_token

    async def wait_turn(self, timeout_s: float) -> None:
        """Wait until no final request is before its first token (at most `timeout_s`)."""
        if self.idle.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout=timeout_s)
