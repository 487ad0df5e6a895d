"""The warm-up planner: which token prefixes to prefill while the user is still typing.

Pure logic (no I/O, no asyncio, no clock): the session code feeds it what the user typed,
already rendered with the chat template and tokenized, and it answers with the warm-up to
send (a ``max_tokens=1`` request whose prompt is ``WarmUp.tokens``), or ``None``.

What it encodes about vLLM's automatic prefix caching:

- Only FULL blocks of ``block_size`` tokens are cached, and the last prompt token is always
  recomputed, so a request of N prompt tokens leaves ``floor((N - 1) / block_size)`` full
  blocks reusable (:func:`usable_blocks`).
- A later request hits those blocks only for its longest common token prefix with what was
  warmed, block by block: an edit behind the warmed frontier moves the frontier back.

Per session it keeps at most one warm-up in flight; a newer candidate replaces an older one
that is still waiting (coalescing), and a candidate is sent only if it adds at least one
full usable block over what is (or will be, once the in-flight warm-up lands) cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def usable_blocks(sent_tokens: int, block_size: int) -> int:
    """Full blocks reusable after a request of ``sent_tokens`` prompt tokens: floor((N-1)/B)."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if sent_tokens <= 1:
        return 0
    return (sent_tokens - 1) // block_size


def common_prefix_len(a: Sequence[int], b: Sequence[int], chunk: int = 64) -> int:
    """Length of the longest common prefix of two token sequences.

    Called on every keystroke with prompts of thousands of tokens that mostly agree, so it
    compares chunk by chunk (slices compare at C speed) and only then token by token.
    """
    if type(a) is not type(b):
        a, b = tuple(a), tuple(b)
    n = min(len(a), len(b))
    start = 0
    while start < n and a[start : start + chunk] == b[start : start + chunk]:
        start += chunk
    end = min(start + chunk, n)
    while start < end and a[start] == b[start]:
        start += 1
    return min(start, n)


def valid_blocks(warmed: Sequence[int], tokens: Sequence[int], block_size: int) -> int:
    """Blocks of ``tokens`` that hit the cache left by warming ``warmed``."""
    return min(
        usable_blocks(len(warmed), block_size),
        common_prefix_len(warmed, tokens) // block_size,
    )


def split_pieces(
    tokens: Sequence[int], cached_blocks: int, block_size: int, piece_tokens: int
) -> list[tuple[int, ...]]:
    """A warm-up of `tokens`, of which `cached_blocks` full blocks are cached, as consecutive
    prefixes that each compute at most `piece_tokens` more (rounded down to whole blocks, at
    least one).

    Every piece ends one token past a full block (`k * B + 1` tokens leave k blocks): a
    warm-up computes only what gets cached, never the last partial block, which the final
    request computes anyway. The last piece leaves every usable block of `tokens`; there is
    always at least one piece (all cached already: one cheap request that confirms it).
    """
    last = usable_blocks(len(tokens), block_size)
    if last == 0:
        return [tuple(tokens)]
    step = max(1, piece_tokens // block_size)
    ends = [*range(min(cached_blocks, last) + step, last, step), last]
    return [tuple(tokens[: end * block_size + 1]) for end in ends]


@dataclass(frozen=True)
class WarmUp:
    """One warm-up request to send: the prompt of a ``max_tokens=1`` completion."""

    tokens: tuple[int, ...]
    seq: int
    submit_ready: bool


class WarmPlanner:
    """Per-session warm-up state machine; see the module docstring.

    The caller sends each returned :class:`WarmUp` and reports its end with
    :meth:`on_warm_done`, passing back the very object it was given.
    """

    def __init__(self, block_size: int) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self._block_size = block_size
        self._confirmed: tuple[int, ...] = ()
        self._in_flight: WarmUp | None = None
        self._pending: WarmUp | None = None
        self._current: tuple[int, ...] = ()

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def confirmed(self) -> tuple[int, ...]:
        """Tokens of the last warm-up that completed OK (what vLLM has cached for us)."""
        return self._confirmed

    @property
    def in_flight(self) -> WarmUp | None:
        return self._in_flight

    @property
    def pending(self) -> WarmUp | None:
        """The newest candidate waiting for the in-flight warm-up to end."""
        return self._pending

    @property
    def current(self) -> tuple[int, ...]:
        """The latest prompt the planner was offered."""
        return self._current

    @property
    def cached_tokens(self) -> int:
        """Tokens of the latest prompt seen that are believed cached (whole blocks)."""
        return valid_blocks(self._confirmed, self._current, self._block_size) * self._block_size

    def believed_cached(self, tokens: Sequence[int]) -> int:
        """Tokens of ``tokens`` believed cached (whole blocks): what a request of them would hit
        of what this session warmed (or an earlier final of it left)."""
        return valid_blocks(self._confirmed, tokens, self._block_size) * self._block_size

    def on_input(self, tokens: Sequence[int], seq: int) -> WarmUp | None:
        """New typed text (rendered up to its stable prefix): maybe warm it."""
        return self._offer(WarmUp(tuple(tokens), seq, submit_ready=False))

    def on_pause(self, tokens: Sequence[int], seq: int) -> WarmUp | None:
        """Typing paused: maybe warm the whole submit-ready prompt."""
        return self._offer(WarmUp(tuple(tokens), seq, submit_ready=True))

    def on_warm_done(self, warm: WarmUp, ok: bool, complete: bool = True) -> WarmUp | None:
        """The in-flight warm-up ended; returns the pending one to send next, if worth it.

        `ok` and `complete`: all of it landed. `ok` but not `complete`: it stopped after some
        of its pieces (each credited as it landed, `credit`) to let the pending one go on.
        After a failure nothing is promoted: the caller decides when to try again (its
        back-off) and then offers the current text afresh, so no candidate is ever marked in
        flight without being sent.
        """
        if self._in_flight is None or warm is not self._in_flight:
            return None  # stale: from before a reset, or already reported
        self._in_flight = None
        pending, self._pending = self._pending, None
        if not ok:
            return None
        if complete:
            self.credit(warm.tokens)
        if pending is not None and self._worth(pending.tokens, self._confirmed):
            self._in_flight = pending
            return pending
        return None

    def credit(self, landed: Sequence[int]) -> None:
        """A request of `landed` tokens (a piece of a warm-up) was answered: its full blocks
        are cached. Kept unless it is a prefix of what is already believed cached."""
        landed = tuple(landed)
        if common_prefix_len(landed, self._confirmed) < len(landed):
            self._confirmed = landed

    def assume_cached(self, tokens: Sequence[int]) -> None:
        """A request outside the planner (the final one) left ``tokens`` in the cache."""
        self._confirmed = tuple(tokens)
        self._current = self._confirmed
        self._in_flight = None
        self._pending = None

    def evicted(self, resident_tokens: int) -> bool:
        """vLLM evicted the warmed blocks from `resident_tokens` on (whole blocks): believe
        only what is left. True if that took back a block the planner believed cached."""
        kept = resident_tokens // self._block_size
        if kept >= usable_blocks(len(self._confirmed), self._block_size):
            return False
        # A request of kept * B + 1 tokens leaves exactly `kept` blocks (see usable_blocks).
        self._confirmed = self._confirmed[: kept * self._block_size + 1] if kept else ()
        return True

    def forget_cache(self) -> None:
        """vLLM restarted and its cache is empty: warm again from the start."""
        self._confirmed = ()

    def reset(self) -> None:
        """Forget everything (after a submit, or when the context changes)."""
        self._confirmed = ()
        self._in_flight = None
        self._pending = None
        self._current = ()

    def _offer(self, candidate: WarmUp) -> WarmUp | None:
        self._current = candidate.tokens
        if self._in_flight is not None:
            # Decide against what will be cached once the in-flight warm-up lands. A newer
            # candidate replaces an older pending one, even when it is not worth sending.
            worth = self._worth(candidate.tokens, self._in_flight.tokens)
            self._pending = candidate if worth else None
            return None
        self._pending = None
        if not self._worth(candidate.tokens, self._confirmed):
            return None
        self._in_flight = candidate
        return candidate

    def _worth(self, tokens: tuple[int, ...], warmed: tuple[int, ...]) -> bool:
        """True if warming ``tokens`` adds at least one usable block over ``warmed``."""
        have = valid_blocks(warmed, tokens, self._block_size)
        return usable_blocks(len(tokens), self._block_size) >= have + 1
