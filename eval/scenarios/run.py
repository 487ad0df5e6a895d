"""`python -m eval run` (the default command) and the suites' command (`suite`, `load`).

One run starts (or reuses) vLLM, the database and the orchestrator, replays seeded input through
the real `/ws/session`, and writes report.json, report.md and ttft.png under the output folder:
TTFT of cold / static / keystroke / oracle (/ speculate) requests on a workload.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path
from typing import get_args

from eval.harness.modes import DEFAULT_MODES, MODES
from eval.harness.rounds import MIXED
from eval.harness.runner import RunPlan
from eval.harness.stack import launched
from eval.scenarios.suites import SUITES, run_suite
from eval.workloads.replay import REPLAYS, Replay, SubmitPause
from eval.workloads.workload import DEFAULT_DATASETS, WorkloadKind, load_workload

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "reports" / "latest"


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workload",
        choices=get_args(WorkloadKind),
        default=None,
        help="text-to-sql, long-input or paste-then-ask (default: from --dataset)",
    )
    parser.add_argument("--dataset", type=Path, default=None, help="dataset folder")
    parser.add_argument("--cases", type=int, default=12, help="first N cases (0: all)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the replay")
    parser.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help=f"comma-separated, of {', '.join(MODES)} (speculate: keystroke warm-ups and "
        "answers before Enter; the orchestrator speculates only for its sessions)",
    )
    parser.add_argument("--max-tokens", type=int, default=96, help="max_tokens of the answers")
    parser.add_argument("--replay", choices=REPLAYS, default="typing", help="typing or dictation")
    parser.add_argument(
        "--typing-speedup",
        type=float,
        default=1.0,
        help="divide the replay's intervals by K (recorded)",
    )
    parser.add_argument(
        "--submit-pause",
        default="enter",
        help="'enter' (one drawn interval after the last key) or seconds",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="typists at once")
    parser.add_argument("--stagger-s", type=float, default=1.5, help="between typists' starts")
    parser.add_argument(
        "--context-cache",
        choices=("own", "shared"),
        default="own",
        help="own: a salt per case (per visitor); shared: one per mode (one app)",
    )
    add_common(parser)
    parser.add_argument(
        "--idle-gap-s",
        type=float,
        default=0.0,
        help="engine state before each final: 0 = as typed (recorded); G > 0 = every measured "
        "final waits until vLLM has been idle G s, in every mode (one typist only)",
    )
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="also the mixed-load arm: keystroke and cold typists taking turns (with "
        "--concurrency 2 or more; reported as mixed:keystroke and mixed:cold)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    return parser


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command that runs plans takes."""
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="play every case in every mode R times, modes interleaved (intervals over them)",
    )
    parser.add_argument(
        "--enforce-eager",
        action="store_true",
        help="start vLLM eager (no compile: quicker to start, slower prefill; recorded)",
    )


def plan_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RunPlan:
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.idle_gap_s < 0 or (args.idle_gap_s > 0 and args.concurrency > 1):
        parser.error("--idle-gap-s: 0, or a positive gap with one typist (--concurrency 1)")
    try:
        replay = Replay(args.replay, args.typing_speedup, SubmitPause.parse(args.submit_pause))
    except ValueError as error:
        parser.error(str(error))
    kind: WorkloadKind | None = args.workload
    dataset = args.dataset or DEFAULT_DATASETS[kind or "text-to-sql"]
    workload = load_workload(dataset.resolve(), args.cases, kind)
    return RunPlan(
        workload,
        tuple(modes),
        replay,
        args.seed,
        args.max_tokens,
        args.concurrency,
        args.stagger_s,
        args.context_cache,
        args.repeats,
        args.idle_gap_s,
        (MIXED,) if args.mixed else (),
    )


def run_main(argv: list[str]) -> int:
    parser = run_parser()
    args = parser.parse_args(argv)
    plan = plan_from(args, parser)
    with launched([plan.workload], args.enforce_eager, plan.speculates) as session:
        report = asyncio.run(session.evaluate(plan))
    session.write(report, args.out)
    print(args.out.joinpath("report.md").read_text())
    print(f"reports in {args.out}")
    return 0


def suite_main(argv: list[str], name: str) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m eval {name}")
    parser.add_argument("--quick", action="store_true", help="fewer cases (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--cases", type=int, default=None, help="cases of every run")
    parser.add_argument("--modes", default="", help="comma-separated modes of every run")
    add_common(parser)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    suite = SUITES[name](args.quick, args.repeats)
    names = [spec.name for spec in suite]
    only = [n for n in args.only.split(",") if n]
    if unknown := sorted(set(only) - set(names)):
        parser.error(f"no run named {', '.join(unknown)}; runs: {', '.join(names)}")
    suite = [spec for spec in suite if not only or spec.name in only]
    if args.cases is not None:
        suite = [dataclasses.replace(spec, cases=args.cases) for spec in suite]
    if modes := tuple(m for m in args.modes.split(",") if m):
        if unknown := sorted(set(modes) - set(MODES)):
            parser.error(f"unknown mode {', '.join(unknown)}; modes: {', '.join(MODES)}")
        suite = [spec if spec.mixed else dataclasses.replace(spec, modes=modes) for spec in suite]
    plans = [spec.plan() for spec in suite]
    speculating = any(plan.speculates for plan in plans)
    with launched([plan.workload for plan in plans], args.enforce_eager, speculating) as session:
        summary = asyncio.run(run_suite(session, suite, args.out))
    print(summary)
    print(f"reports in {args.out}")
    return 0
