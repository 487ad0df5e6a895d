"""One eval run: rounds of N typists (`eval/harness/rounds.py`), modes interleaved, repeated.

In a round, typist ``i`` starts ``i * stagger_s`` seconds after the first, each on its own case
of the round's group, in the mode its arm gives it; the round ends when every typist is done.
Every case runs under a fresh cache salt per mode and repeat (`own`), or one per mode and
repeat (`shared`, one app's users). Every frame goes on the case's schedule (`schedule.py`), the
same in every mode.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from tqdm import tqdm

from eval.engine.facts import count_tokens
from eval.engine.kv_watch import watching
from eval.engine.state import EngineState, engine_state_label, sampling
from eval.engine.warm import CaseKey, EngineWarm, engine_warm
from eval.harness.modes import SPECULATE, CaseRun, EvalError, Timeline, run_mode
from eval.harness.rounds import Arm, Round, rounds
from eval.harness.schedule import Schedule
from eval.reports.results import CaseResult
from eval.workloads.replay import Replay
from eval.workloads.workload import Case, Workload

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
    repeats: int = 3
    idle_gap_s: float = 0.0
    mixed: tuple[Arm, ...] = ()  # arms beyond one per mode (the mixed-load scenario)

    @property
    def arms(self) -> tuple[Arm, ...]:
        return (*(Arm.of(mode) for mode in self.modes), *self.mixed)

    @property
    def speculates(self) -> bool:
        """Whether some typist of the plan runs the `speculate` mode."""
        return any(SPECULATE in arm.slots for arm in self.arms)

    @property
    def labels(self) -> list[str]:
        typists = max(1, min(self.concurrency, len(self.workload.cases)))
        return list(dict.fromkeys(label for a in self.arms for label in a.labels(typists)))

    def settings(self) -> dict[str, Any]:
        return {
            **self.replay.settings(),
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "concurrency": self.concurrency,
            "stagger_s": self.stagger_s,
            "context_cache": self.context_cache,
            "modes": list(self.modes),
            "arms": [{"name": arm.name, "slots": list(arm.slots)} for arm in self.arms],
            "repeats": self.repeats,
            "order": "interleaved: every arm per group of cases, order rotating per group",
            "engine_state": engine_state_label(self.idle_gap_s),
            "idle_gap_s": self.idle_gap_s,
        }


@dataclass
class RunOutcome:
    results: list[CaseResult]
    busy: dict[str, float | None]  # per label: share of its rounds' samples the engine was busy
    engine: dict[str, EngineWarm] = field(default_factory=dict)  # per label (KV events on)


@dataclass(frozen=True)
class Upstream:
    """Where the run's sessions and engine figures come from."""

    ws_url: str
    vllm_url: str
    salt_of: Callable[[str], str]  # a namespace's cache salt, as the orchestrator derives it
    kv_events_url: str | None = None  # vLLM's KV event feed (None: no engine-side counts)
    block_size: int = 32


class Runner:
    def __init__(self, plan: RunPlan, upstream: Upstream, score: Scorer) -> None:
        self.plan, self.upstream, self.score = plan, upstream, score
        self.run_id = secrets.token_hex(4)
        self.typed_tokens: dict[str, int] = {}
        self.rounds = rounds(plan.workload.cases, plan.arms, plan.concurrency, plan.repeats)
        self.progress = tqdm(
            total=sum(len(r.cases) for r in self.rounds), unit="case", file=sys.stderr, leave=True
        )
        self.salts: dict[CaseKey, str] = {}  # (label, case, repeat) -> its cache salt

    async def run(self) -> RunOutcome:
        results: list[CaseResult] = []
        spans: dict[str, list[tuple[float, float]]] = {}
        up = self.upstream
        async with (
            httpx.AsyncClient(timeout=60) as http,
            sampling(http, up.vllm_url, self.plan.idle_gap_s) as engine,
            watching(up.kv_events_url) as watch,
        ):
            if watch is not None:
                watch.on_activity = engine.note_busy
            for case in self.plan.workload.cases:  # what the user enters, a paste included
                entered = Schedule.of(self.plan.replay, case.text, self.plan.seed, case.pasted)
                self.typed_tokens[case.id] = await count_tokens(
                    http, up.vllm_url, entered.final_text
                )
            with self.progress:
                for round_ in self.rounds:
                    began = time.monotonic()
                    played = await self.play(round_, engine)
                    for label in {r.mode for r in played}:
                        spans.setdefault(label, []).append((began, time.monotonic()))
                    results += played
            if watch is not None:
                await watch.settle()
        busy = {label: engine.busy_share(spans.get(label, [])) for label in self.plan.labels}
        if watch is None or not watch.batches:  # no events came: vLLM does not publish them
            return RunOutcome(results, busy)
        per_label, per_case = engine_warm(watch.blocks, self.salts, results, up.block_size)
        results = [with_engine_figures(r, per_case) for r in results]
        return RunOutcome(results, busy, dict(per_label))

    async def play(self, round_: Round[Case], engine: EngineState) -> list[CaseResult]:
        async def typist(index: int, case: Case) -> CaseResult:
            await asyncio.sleep(index * self.plan.stagger_s)
            return await self.one(round_, index, case, engine)

        return list(await asyncio.gather(*(typist(i, c) for i, c in enumerate(round_.cases))))

    def namespace(self, label: str, case: Case, repeat: int) -> str:
        if self.plan.context_cache == "shared":  # one app's users: one cache per mode
            return f"eval-{self.run_id}-{label}-r{repeat}"
        return f"eval-{self.run_id}-{case.id}-{label}-r{repeat}"  # a fresh salt per case

    async def one(
        self, round_: Round[Case], typist: int, case: Case, engine: EngineState
    ) -> CaseResult:
        plan, mode, label = self.plan, round_.arm.mode(typist), round_.arm.label(typist)
        namespace = self.namespace(label, case, round_.repeat)
        run = CaseRun(
            self.upstream.ws_url,
            plan.workload.context(),
            Schedule.of(plan.replay, case.text, plan.seed, case.pasted),
            namespace,
            plan.max_tokens,
            engine,
        )
        typed = self.typed_tokens[case.id]
        try:
            done, timeline = await asyncio.wait_for(run_mode(mode, run), timeout=CASE_TIMEOUT_S)
        except (EvalError, OSError, TimeoutError) as error:
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            return CaseResult(
                case.id, label, None, 0, 0, 0, 0, typed, "", failure=reason, repeat=round_.repeat
            )
        finally:
            self.progress.set_postfix_str(f"{case.id} {label} r{round_.repeat}", refresh=False)
            self.progress.update()
        self.salts[(label, case.id, round_.repeat)] = self.upstream.salt_of(namespace)
        return await self.result(label, case, done, typed, timeline, round_.repeat)

    async def result(
        self,
        label: str,
        case: Case,
        done: dict[str, Any],
        typed: int,
        timeline: Timeline,
        repeat: int,
    ) -> CaseResult:
        ttft = done.get("ttft_ms")
        text = str(done.get("text") or "")
        failure = None
        if ttft is None or not text.strip():
            failure = f"no answer (finish_reason {done.get('finish_reason')!r}, text {text!r})"
        correct = await self.score(case, done) if failure is None else None
        card, pieces = done.get("scorecard"), done.get("warm_pieces")
        return CaseResult(
            case=case.id,
            mode=label,
            ttft_ms=None if failure or ttft is None else float(ttft),
            prompt_tokens=int(done.get("prompt_tokens") or 0),
            cached_tokens=int(done.get("cached_tokens") or 0),
            warm_requests=int((pieces or {}).get("landed") or 0),
            warm_prefill_tokens=int((card or {}).get("warm_prefill_tokens") or 0),
            typed_tokens=typed,
            text=text,
            sql=done.get("sql"),
            refused=done.get("refused"),
            correct=correct,
            failure=failure,
            scorecard=card | {"hit_tokens": done.get("cached_tokens")} if card else None,
            repeat=repeat,
            completion_tokens=int(done.get("completion_tokens") or 0),
            timeline=vars(timeline).copy(),
            warm_pieces=pieces if isinstance(pieces, dict) else None,
            speculative=bool((card or {}).get("speculative")),
            speculation_wasted_tokens=int((card or {}).get("speculation_wasted_tokens") or 0),
        )


def with_engine_figures(
    result: CaseResult, per_case: dict[CaseKey, tuple[int, int | None]]
) -> CaseResult:
    found = per_case.get((result.mode, result.case, result.repeat))
    if found is None:
        return result
    warm, typed = found
    return dataclasses.replace(
        result, engine_warm_prefill_tokens=warm, engine_typed_warm_prefill_tokens=typed
    )
