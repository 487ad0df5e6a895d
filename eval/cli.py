"""The eval's one command line: `python -m eval COMMAND [options]`, or `prefill-ahead-eval`.

Each command parses its own options (`python -m eval COMMAND --help`); with no command, or
options only, `run` is meant (`python -m eval --cases 4` is `python -m eval run --cases 4`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NamedTuple

from eval.benches import hostile, keystrokes, passthrough, speculate
from eval.harness.modes import EvalError
from eval.reports import compare, finals_cost, readme_tables
from eval.scenarios import eviction, gpu, replicas, restart, run, states
from orchestrator.errors import ServiceError, SetupError
from testkit.serving import StartupFailed
from vllm_launch.errors import LaunchError
from vllm_launch.signals import exits_on_signals


class Command(NamedTuple):
    main: Callable[[list[str]], int]
    help: str


def suite_command(name: str) -> Callable[[list[str]], int]:
    return lambda argv: run.suite_main(argv, name)


COMMANDS: dict[str, Command] = {
    "run": Command(run.run_main, "one run, one report (the default command)"),
    "suite": Command(suite_command("suite"), "what `make eval` runs: several runs, a summary"),
    "load": Command(
        suite_command("load"), "N typists at once (N = 1, 2, 4, 8), both cache set-ups"
    ),
    "eviction": Command(eviction.main, "a small KV cache: hit rate at submit, KV events on/off"),
    "replicas": Command(replicas.main, "N typists on one vLLM, then on replicas behind a router"),
    "restart": Command(restart.main, "vLLM restarts: first requests, prefix index on/off"),
    "states": Command(states.main, "TTFT from a named state vs the same prompt cold"),
    "gpu": Command(gpu.main, "the eval on the engine with a synthetic model (--quick: a CPU)"),
    "compare": Command(compare.compare_main, "two reports side by side"),
    "readme-tables": Command(readme_tables.main, "README's figure tables against their reports"),
    "finals-cost": Command(finals_cost.main, "each final's TTFT against its own uncached cost"),
    "hostile": Command(hostile.main, "hostile input against the fake vLLM: crashes must be 0"),
    "bench-keystrokes": Command(keystrokes.main, "N typing sessions against the fake vLLM"),
    "bench-passthrough": Command(passthrough.main, "TTFT through the passthrough vs straight"),
    "bench-speculate": Command(speculate.main, "answer before Enter, with and without"),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m eval", description=__doc__)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=command.help, add_help=False)  # its options: its own
    return top


def with_command(argv: list[str]) -> list[str]:
    """`run` where the arguments start with an option of its own, or are none."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return ["run", *argv]
    return argv


@exits_on_signals
def main(argv: list[str] | None = None) -> int:
    args, options = parser().parse_known_args(
        with_command(list(sys.argv[1:] if argv is None else argv))
    )
    try:
        return COMMANDS[args.command].main(options)
    except (SetupError, LaunchError, EvalError, ServiceError, StartupFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
