"""What the hostile-input benchmark (`eval/benches/hostile.py`) sends: malformed, oversized,
out-of-order and fuzzed WebSocket frames, and bad HTTP requests. Seeded: the same seed sends
the same bytes."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

WS_LIMIT = 65_536  # the default PREFILL_WS_MAX_MESSAGE_BYTES
HTTP_LIMIT = 1_048_576  # the default PREFILL_HTTP_MAX_BODY_BYTES
SYSTEM = "You answer questions about a small shop's orders in one short sentence. " * 4

MALFORMED: list[str | bytes] = [
    "",
    "{",
    "}",
    "null",
    "[]",
    "1",
    '"start"',
    '{"type":',
    "{'type': 'input'}",
    "NaN",
    '{"type": "input", "text": "a"} trailing',
    b"\x00\xff\xfe",
    b"",
    "\ud800".encode("utf-8", "surrogatepass"),
    '{"type": "input", "text": "\\ud800", "seq": 1}',
    "\x00",
    '{"type": "input", "text": "a", "seq": 1,}',
]
WRONG_SHAPES: list[dict[str, object]] = [
    {"type": "input", "text": 1, "seq": 1},
    {"type": "input"},
    {"type": "submit", "text": None},
    {"type": "start", "context": "x"},
    {"type": "start", "context": {"database": "nope"}},
    {"type": "start", "context": {"system": 1}},
    {"type": "start", "params": {"max_tokens": -1}},
    {"type": "input", "text": "x", "seq": "a"},
    {"type": "input", "text": "x", "seq": 10**30},
    {"type": 5},
    {"type": "x" * 1000},
    {"type": "start", "warmups": "bogus"},
    {"type": "start", "context": {"system": "s", "history": [{"role": "god", "content": 1}]}},
    {"type": "start", "cache_namespace": "n" * 5000},
    {"type": "cancel", "extra": [1, 2]},
    {"type": "input", "text": "x", "seq": -1},
    {"type": "submit", "text": "", "seq": 0},
    {"type": "start", "params": {"temperature": "hot", "max_tokens": 10**9}},
]
HTTP_PATHS = ["/v1/completions", "/v1/chat/completions", "/v1/warm", "/v1/states"]


@dataclass
class FrameMaker:
    """Frames for one connection; `rng` decides the mix."""

    rng: random.Random
    seq: int = 0
    text: str = ""
    started: bool = False
    kinds: list[str] = field(default_factory=list)

    def next(self) -> str | bytes:
        kind = self.rng.choices(
            ["malformed", "shape", "order", "fuzz", "nested", "oversized", "valid"],
            weights=[15, 20, 20, 20, 5, 1, 19],
        )[0]
        self.kinds.append(kind)
        make: Callable[[], str | bytes] = getattr(self, kind)
        return make()

    def malformed(self) -> str | bytes:
        return self.rng.choice(MALFORMED)

    def shape(self) -> str:
        return json.dumps(self.rng.choice(WRONG_SHAPES))

    def order(self) -> str:
        """Valid frames at the wrong time: seq backwards or repeated, a start mid-typing, a
        submit then more input, a cancel with nothing running."""
        choice = self.rng.randrange(5)
        if choice == 0:
            return json.dumps(
                {"type": "input", "text": self.text[:3], "seq": self.rng.randint(0, 3)}
            )
        if choice == 1:
            return json.dumps({"type": "start", "context": {"system": SYSTEM}})
        if choice == 2:
            return json.dumps({"type": "submit", "text": self.text or "x", "seq": self.seq})
        if choice == 3:
            return json.dumps({"type": "cancel"})
        return json.dumps({"type": "input", "text": self.text, "seq": self.seq})  # a repeat

    def fuzz(self) -> str | bytes:
        """A valid frame with a few characters changed, or random bytes or text."""
        choice = self.rng.randrange(3)
        if choice == 0:
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 200)))
        if choice == 1:
            return "".join(chr(self.rng.randrange(0x20, 0x2FFF)) for _ in range(50))
        frame = list(self.valid())
        for _ in range(self.rng.randint(1, 4)):
            frame[self.rng.randrange(len(frame))] = self.rng.choice(string.printable)
        return "".join(frame)

    def nested(self) -> str:
        depth = self.rng.choice([100, 1000, 20_000])
        inner = "[" * depth + "]" * depth
        return '{"type": "input", "text": ' + inner + ', "seq": 1}'

    def oversized(self) -> str:
        return json.dumps({"type": "input", "text": "a" * (WS_LIMIT + 10), "seq": self.seq})

    def valid(self) -> str:
        if not self.started:
            self.started = True
            return json.dumps({"type": "start", "context": {"system": SYSTEM}})
        self.seq += 1
        self.text += self.rng.choice(string.ascii_lowercase + "  ")
        return json.dumps({"type": "input", "text": self.text, "seq": self.seq})


def http_request(rng: random.Random) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) of one bad HTTP request."""
    path = rng.choice(HTTP_PATHS)
    headers = {"content-type": "application/json"}
    choice = rng.randrange(8)
    if choice == 0:
        body = rng.choice([b"{", b"null", b"[1,", b"\xff\xfe", b"", b'{"prompt": NaN}'])
    elif choice == 1:
        body = json.dumps(rng.choice(WRONG_SHAPES)).encode()
    elif choice == 2:
        body = b"x" * (HTTP_LIMIT + 1)
    elif choice == 3:
        body = b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    elif choice == 4:
        body = json.dumps({"prompt": [rng.randrange(-(2**40), 2**40) for _ in range(20)]}).encode()
    elif choice == 5:
        headers["host"] = "rebind.attacker.example"
        body = json.dumps({"prompt": "hello"}).encode()
    elif choice == 6:
        body = json.dumps({"messages": [{"role": "user", "content": {"x": [1] * 50}}]}).encode()
    else:
        headers["content-type"] = "text/plain"
        body = bytes(rng.randrange(256) for _ in range(rng.randint(1, 500)))
    return "POST", path, headers, body
