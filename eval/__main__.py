"""`python -m eval`: TTFT of cold / static / keystroke / oracle requests on a text-to-SQL dataset.

Starts (or reuses) vLLM, the database and the orchestrator, replays seeded typing through the
real `/ws/session`, and writes report.json, report.md and ttft.png under the output folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from eval.modes import MODES, EvalError, run_mode
from eval.replay import keystrokes, typing_seconds
from eval.report import CaseResult, build_report, write_reports
from eval.scoring import gold_orders, results_match
from eval.serving import serve_in_thread
from orchestrator.errors import ServiceError, SetupError
from orchestrator.launch import launched_vllm
from orchestrator.settings import Settings
from orchestrator.text_to_sql.runner import QueryResult, run_query
from orchestrator.web.app import create_app
from orchestrator.web.services import Services
from vllm_launch.engine_env import detect_device
from vllm_launch.errors import LaunchError

ROOT = Path(__file__).resolve().parent
DEFAULT_DATASET = ROOT / "datasets" / "demo"
DEFAULT_OUT = ROOT / "data" / "reports" / "latest"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="dataset folder")
    parser.add_argument("--cases", type=int, default=12, help="first N questions (0: all)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the typing replay")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--max-tokens", type=int, default=96, help="max_tokens of the answers")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    args = parser.parse_args(argv)
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    return args


def load_questions(dataset: Path, cases: int) -> list[dict[str, str]]:
    path = dataset / "questions.jsonl"
    if not (dataset / "schema.sql").is_file() or not path.is_file():
        raise SetupError(
            f"{dataset} is not a dataset: it needs schema.sql, seed.sql, questions.jsonl"
        )
    questions = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            questions.append({key: str(item[key]) for key in ("id", "question", "gold_sql")})
        except (ValueError, KeyError, TypeError) as error:
            raise SetupError(
                f"{path}:{number}: not an id/question/gold_sql object ({error})"
            ) from None
    return questions[:cases] if cases > 0 else questions


class Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        filled = int(30 * self.done / self.total)
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        bar = "#" * filled + "." * (30 - filled)
        print(
            f"\r[{bar}] {self.done}/{self.total} {label:<24} eta {eta:4.0f} s",
            end="",
            file=sys.stderr,
        )
        if self.done == self.total:
            print(file=sys.stderr)


async def evaluate(args: argparse.Namespace, app: FastAPI, app_url: str) -> dict[str, Any]:
    services: Services = app.state.services
    async with httpx.AsyncClient() as http:
        engine = (await http.get(f"{app_url}/health", timeout=30)).json()["vllm"]
    if not engine["ok"]:
        raise EvalError(f"vLLM is not healthy: {engine['error']}")
    name = args.dataset.name
    reader_url = services.sql.get(name).reader_url
    questions = load_questions(args.dataset, args.cases)
    typing = sum(typing_seconds(keystrokes(q["question"], args.seed)) for q in questions)
    print(
        f"{len(questions)} cases x {len(args.modes)} modes; keystroke typing alone {typing:.0f} s"
    )
    ws_url = app_url.replace("http://", "ws://") + "/ws/session"
    run_id = secrets.token_hex(4)
    progress = Progress(len(questions) * len(args.modes))
    results: list[CaseResult] = []
    for question in questions:
        gold = await run_query(reader_url, question["gold_sql"], max_rows=100_000)
        for mode in args.modes:
            namespace = f"eval-{run_id}-{question['id']}-{mode}"  # a fresh salt per case and mode
            done = await run_mode(
                mode, ws_url, name, question["question"], namespace, args.seed, args.max_tokens
            )
            results.append(await score(question, mode, done, gold, reader_url))
            progress.step(f"{question['id']} {mode}")
    meta = {
        "model": engine["model"],
        "backend": {"device": detect_device(), "block_size": engine["block_size"]},
        "dataset": name,
        "cases": len(questions),
        "seed": args.seed,
        "max_tokens": args.max_tokens,
    }
    return build_report(results, meta, args.modes)


async def score(
    question: dict[str, str], mode: str, done: dict[str, Any], gold: QueryResult, reader_url: str
) -> CaseResult:
    correct = False
    if done.get("sql") and not done.get("refused"):
        try:
            predicted = await run_query(reader_url, done["sql"], max_rows=100_000)
            correct = results_match(gold, predicted, ordered=gold_orders(question["gold_sql"]))
        except ServiceError:
            correct = False
    return CaseResult(
        case=question["id"],
        mode=mode,
        ttft_ms=float(done["ttft_ms"] or 0.0),
        prompt_tokens=int(done["prompt_tokens"]),
        cached_tokens=int(done["cached_tokens"]),
        warm_requests=int(done["warm_requests"]),
        warm_prefill_tokens=int(done["warm_prefill_tokens"]),
        text=str(done["text"]),
        sql=done.get("sql"),
        refused=done.get("refused"),
        correct=correct,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        args.dataset = args.dataset.resolve()
        load_questions(args.dataset, 1)
        settings = Settings(datasets_dir=args.dataset.parent)
        with launched_vllm(settings, enforce_eager=False):
            app = create_app(settings)
            with serve_in_thread(app, timeout_s=300) as app_url:
                report = asyncio.run(evaluate(args, app, app_url))
        write_reports(report, args.out)
    except (SetupError, LaunchError, EvalError, ServiceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(args.out.joinpath("report.md").read_text())
    print(f"reports in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
