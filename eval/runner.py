"""One eval run: every mode in turn, each a pass over the cases by N typists at once.

Within a pass, typist ``i`` starts ``i * stagger_s`` seconds after the first and takes cases
``i, i + N, i + 2N, ...`` one after the other. Modes run one pass after another, so the load
during a pass is what users of that mode alone would make.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from eval.engine import count_tokens, sampling_busy
from eval.modes import CaseRun, EvalError, run_mode
from eval.replay import Replay
from eval.report import CaseResult
from eval.workloads import Case, Workload

ContextCache = Literal["own", "shared"]
Scorer = Callable[[Case, dict[str, Any]], Awaitable[bool | None]]
CASE_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class RunPlan:
    workload: Workload
    modes: tuple[str, ...]
    replay: Replay
    seed: int
    max_tokens: int
    concurrency: int = 1
    stagger_s: float = 1.5
    context_cache: ContextCache = "own"

    def settings(self) -> dict[str, Any]:
        return {
            **self.replay.settings(),
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "concurrency": self.concurrency,
            "stagger_s": self.stagger_s,
            "context_cache": self.context_cache,
            "modes": list(self.modes),
        }


class Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        filled = int(30 * self.done / self.total)
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        bar = "#" * filled + "." * (30 - filled)
        end = "\n" if self.done == self.total else ""
        print(
            f"\r[{bar}] {self.done}/{self.total} {label:<28} eta {eta:4.0f} s",
            end=end,
            file=sys.stderr,
            flush=True,
        )


class Runner:
    def __init__(self, plan: RunPlan, ws_url: str, vllm_url: str, score: Scorer) -> None:
        self.plan, self.ws_url, self.vllm_url, self.score = plan, ws_url, vllm_url, score
        self.run_id = secrets.token_hex(4)
        self.typed_tokens: dict[str, int] = {}
        self.progress = Progress(len(plan.workload.cases) * len(plan.modes))

    async def run(self) -> tuple[list[CaseResult], dict[str, float | None]]:
        results: list[CaseResult] = []
        busy: dict[str, float | None] = {}
        async with httpx.AsyncClient(timeout=60) as http:
            for case in self.plan.workload.cases:
                self.typed_tokens[case.id] = await count_tokens(http, self.vllm_url, case.text)
            for mode in self.plan.modes:
                async with sampling_busy(http, self.vllm_url) as sampler:
                    results += await self.mode_pass(mode)
                busy[mode] = sampler.share
        return results, busy

    async def mode_pass(self, mode: str) -> list[CaseResult]:
        cases = self.plan.workload.cases
        n = max(1, min(self.plan.concurrency, len(cases)))

        async def typist(index: int) -> list[CaseResult]:
            await asyncio.sleep(index * self.plan.stagger_s)
            return [await self.one(mode, case) for case in cases[index::n]]

        per_typist = await asyncio.gather(*(typist(i) for i in range(n)))
        return [result for results in per_typist for result in results]

    def namespace(self, mode: str, case: Case) -> str:
        if self.plan.context_cache == "shared":  # one app's users: one cache per mode
            return f"eval-{self.run_id}-{mode}"
        return f"eval-{self.run_id}-{case.id}-{mode}"  # a fresh salt per case and mode

    async def one(self, mode: str, case: Case) -> CaseResult:
        plan = self.plan
        run = CaseRun(
            self.ws_url,
            plan.workload.context(),
            case.text,
            self.namespace(mode, case),
            plan.replay,
            plan.seed,
            plan.max_tokens,
        )
        typed = self.typed_tokens[case.id]
        try:
            done = await asyncio.wait_for(run_mode(mode, run), timeout=CASE_TIMEOUT_S)
        except (EvalError, OSError, TimeoutError) as error:
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            return CaseResult(case.id, mode, None, 0, 0, 0, 0, typed, "", failure=reason)
        finally:
            self.progress.step(f"{case.id} {mode}")
        return await self.result(mode, case, done, typed)

    async def result(self, mode: str, case: Case, done: dict[str, Any], typed: int) -> CaseResult:
        ttft = done.get("ttft_ms")
        text = str(done.get("text") or "")
        failure = None
        if ttft is None or not text.strip():
            failure = f"no answer (finish_reason {done.get('finish_reason')!r}, text {text!r})"
        correct = await self.score(case, done) if failure is None else None
        card = done.get("scorecard")
        return CaseResult(
            case=case.id,
            mode=mode,
            ttft_ms=None if failure or ttft is None else float(ttft),
            prompt_tokens=int(done.get("prompt_tokens") or 0),
            cached_tokens=int(done.get("cached_tokens") or 0),
            warm_requests=int(done.get("warm_requests") or 0),
            warm_prefill_tokens=int(done.get("warm_prefill_tokens") or 0),
            typed_tokens=typed,
            text=text,
            sql=done.get("sql"),
            refused=done.get("refused"),
            correct=correct,
            failure=failure,
            scorecard=card if isinstance(card, dict) else None,
        )
