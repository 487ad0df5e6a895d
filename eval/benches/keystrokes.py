"""Keystroke load on the orchestrator: N typing sessions against a fake vLLM.

    python -m eval bench-keystrokes [--sessions 50 500] [--keys-per-s 8] [--seconds 20]
                                    [--ramp-s 5]

For each N: the fake vLLM (`testkit/fake_vllm.py`) and the orchestrator (`python -m orchestrator`,
default tokenizer, no database) run in two subprocesses on free ports. This process opens N
`/ws/session` WebSockets; each sends `start` with the same ~1,000-token system prompt (padded
so that the chat head is a whole number of KV blocks: the first stable word typed, and every
32 tokens after it, makes a keystroke warm-up), then types its own deterministic question key
by key (one `input` frame with the whole text so far per key, at `--keys-per-s` with seeded
jitter) for `--seconds`, starting at a seeded random moment within the first `--ramp-s` (people
do not all type their first word in the same second; `--ramp-s 0` is that worst case: every
session's first warm-up lands in the same second). A keystroke that falls more than one
interval behind its schedule is skipped, not sent in a burst, so the achieved rate says whether
this client kept up.

Measured per N:

- dispatch latency: when the fake received the warm-up `warm-<session>-<seq>-<n>` minus when
  this process sent keystroke `seq` (both `time.time()`; the context warm-up, seq 0, and
  typing-pause warm-ups, known from the `warm` frames' `submit_ready`, are left out);
- CPU per keystroke: the orchestrator's user+system CPU time (/proc/<pid>/stat) from the first
  keystroke until it has handled the last one (each session ends with a bad frame whose error
  answer comes after all its earlier frames), divided by the keystrokes sent;
- memory per session: the orchestrator's RSS after all sessions started and typed, minus its
  RSS before they connected, divided by N.

The parts: `processes.py` starts and stops the two processes and reads /proc,
`eval/workloads/keystroke_texts.py` writes the system prompt and questions,
`typing_sessions.py` is one typing client, `keystroke_load.py` runs one N and measures it; this
module prints.

`--profile DIR` runs the orchestrator under cProfile (slower: its figures are not the ones
to quote) and writes `DIR/orchestrator-N<n>.prof`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from eval.benches.keystroke_load import Result, run_async, run_sessions
from eval.benches.processes import BLOCK_SIZE, WARMUPS_PER_SECOND, sources_digest, started
from eval.reports.results import quantile
from eval.workloads.keystroke_texts import aligned_system_prompt
from orchestrator.errors import SetupError
from orchestrator.settings import Settings
from vllm_launch.signals import exits_on_signals


def report(results: list[Result]) -> None:
    header = (
        f"{'N':>5}{'keys sent':>11}{'keys/s (target)':>18}{'warm-ups':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'CPU us/key':>12}{'KiB/session':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rate = f"{r.keys_per_s:.0f} ({r.target_keys_per_s:.0f})"
        print(
            f"{r.sessions:>5}{r.keystrokes:>11}{rate:>18}{r.warmups:>10}"
            f"{quantile(r.latencies_ms, 0.50):>9.2f}{quantile(r.latencies_ms, 0.99):>9.2f}"
            f"{r.cpu_us_per_key:>12.0f}{r.kib_per_session:>13.1f}"
        )
    print()
    for r in results:
        print(
            f"N={r.sessions}: keystrokes skipped by the client {r.skipped}; "
            f"warm-ups: {r.context_warmups} context + {r.keystroke_warmups} keystroke "
            f"({len(r.latencies_ms)} latency samples, max "
            f"{max(r.latencies_ms, default=float('nan')):.1f} ms) + {r.pause_warmups} "
            f"typing-pause; final requests {r.finals}; error frames {r.errors or 'none'}; "
            f"orchestrator drained {r.drain_s * 1000:.0f} ms after the last key; "
            f"RSS {r.rss_before_kib / 1024:.1f} -> {r.rss_after_kib / 1024:.1f} MiB; "
            f"orchestrator idle CPU {r.idle_cpu_ms_per_s:.1f} ms/s, CPU per key less idle "
            f"{r.net_cpu_us_per_key:.0f} us; CPU s: client {r.client_cpu_s:.1f}, "
            f"fake vLLM {r.fake_cpu_s:.1f}; load average {r.load:.2f}; "
            f"context tokens {r.head_tokens}"
        )


@exits_on_signals
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval bench-keystrokes", description=__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--keys-per-s", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="each session types this long")
    parser.add_argument(
        "--ramp-s", type=float, default=5.0, help="sessions start typing within this window"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="do not offer permessage-deflate (browsers do offer it)",
    )
    parser.add_argument("--profile", type=Path, help="run the orchestrator under cProfile")
    args = parser.parse_args(argv)
    default_tokenizer = Settings(enable_database=False).tokenizer_path
    try:
        system, head_tokens = aligned_system_prompt(default_tokenizer, BLOCK_SIZE)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="bench-keystrokes-"))
    print(
        f"orchestrator: PREFILL_WARMUPS_PER_SECOND={WARMUPS_PER_SECOND} (global gate out of "
        f"the way), PREFILL_MAX_SESSIONS_PER_TENANT=max(N, 200), PREFILL_ENABLE_DATABASE=false, "
        f"tokenizer {default_tokenizer}, sources sha256 {sources_digest()}; "
        f"client: {args.keys_per_s:g} keys/s per session (jitter +-50%) for {args.seconds:g} s, "
        f"starting within {args.ramp_s:g} s, "
        f"permessage-deflate {'off' if args.no_compression else 'offered'}; "
        f"system prompt: chat head of {head_tokens} tokens; logs {logs}",
        flush=True,
    )
    results: list[Result] = []
    for n in args.sessions:
        print(f"N={n}:", flush=True)
        with started(n, logs, args.profile) as procs:
            results.append(
                run_async(
                    run_sessions(
                        procs,
                        n,
                        system,
                        args.keys_per_s,
                        args.seconds,
                        args.ramp_s,
                        args.seed,
                        not args.no_compression,
                    )
                )
            )
    print()
    report(results)
    return 0
