"""The eval's equal-start rule, on the fake vLLM: every mode replays the same input on the same
schedule from its `ready` and submits at the same offset; no mode waits for its own warm-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.harness.rounds import MIXED
from eval.harness.runner import Runner, RunPlan, Upstream
from eval.harness.schedule import Schedule
from eval.reports.report import build_report
from eval.reports.results import CaseResult
from eval.workloads.replay import Replay, SubmitPause
from eval.workloads.workload import Case, Workload
from testkit.fake_vllm import FakeVLLM
from tests.helpers import SYSTEM
from tests.sessions import Defaults, StartApp, salt

QUESTIONS = (
    "Which customers placed more than three orders last month, and in which regions?",
    "How many invoices are still open, and what is the value of the oldest one?",
)
FAST_TYPING = Replay("typing", 200.0, SubmitPause(None))  # a real schedule, 200 times faster


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    return Defaults(strict_fake=True)  # the eval counts typed tokens with vLLM's /tokenize


def workload(pasted: str = "") -> Workload:
    cases = tuple(Case(f"q{i}", text, pasted=pasted) for i, text in enumerate(QUESTIONS))
    return Workload("long-input", Path("timeline"), cases, SYSTEM)


async def run(start_app: StartApp, fake: FakeVLLM, plan: RunPlan) -> list[dict[str, object]]:
    app = await start_app()
    upstream = Upstream(
        app.url.replace("http://", "ws://") + "/ws/session",
        fake.url,
        lambda namespace: salt(namespace=namespace),
    )

    async def no_score(case: Case, done: dict[str, object]) -> bool | None:
        return None

    outcome = await Runner(plan, upstream, no_score).run()
    return [vars(result) for result in outcome.results]


async def test_every_mode_starts_typing_and_submits_on_one_schedule(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    fake.hold_warmups()  # no warm-up answers: a mode that waited for one would never type
    plan = RunPlan(
        workload(), ("cold", "static", "keystroke", "oracle"), FAST_TYPING, 3, 8, repeats=2
    )
    results = await run(start_app, fake, plan)
    assert len(results) == 2 * 4 * 2
    assert all(r["failure"] is None for r in results), [r["failure"] for r in results]
    static = [r for r in results if r["mode"] == "static"]
    assert all(r["warm_requests"] == 0 for r in static)  # its context warm-up never landed
    for case in ("q0", "q1"):
        lines = [r["timeline"] for r in results if r["case"] == case]
        planned = {(t["first_input_s"], t["submit_s"]) for t in lines}  # type: ignore[index]
        assert len(planned) == 1  # the same offsets from ready in every mode and repeat
        text = next(q for i, q in enumerate(QUESTIONS) if f"q{i}" == case)
        first, submit = planned.pop()
        schedule = Schedule.of(FAST_TYPING, text, 3)
        assert (first, submit) == (schedule.first_input_s, schedule.submit_s)
        assert 0 < first < submit


async def test_modes_are_interleaved_and_each_final_follows_the_idle_gap(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    plan = RunPlan(workload(), ("cold", "keystroke"), FAST_TYPING, 3, 8, repeats=1, idle_gap_s=0.3)
    results = await run(start_app, fake, plan)
    order = [(r["case"], r["mode"]) for r in results]
    assert order == [("q0", "cold"), ("q0", "keystroke"), ("q1", "keystroke"), ("q1", "cold")]
    for r in results:
        assert r["timeline"]["idle_before_final_s"] >= 0.3  # type: ignore[index]


async def test_a_paste_goes_in_one_frame_before_the_question(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    document = "The committee met on Tuesday. " * 40
    plan = RunPlan(workload(document), ("static", "keystroke"), FAST_TYPING, 3, 8, repeats=1)
    results = await run(start_app, fake, plan)
    assert all(r["failure"] is None for r in results)
    # the paste (about 280 tokens) is in every final prompt, which alone is under 100 tokens
    assert all(len(final.prompt) > 300 for final in fake.finals)
    schedule = Schedule.of(FAST_TYPING, QUESTIONS[0], 3, document)
    assert schedule.inputs[0][1] == document + "\n\n"  # the whole document in one frame
    assert [text for _, text in schedule.inputs[1:]][-1] == document + "\n\n" + QUESTIONS[0]
    assert schedule.final_text == document + "\n\n" + QUESTIONS[0]


async def test_the_mixed_load_arm_puts_warming_and_cold_typists_side_by_side(
    start_app: StartApp, fake: FakeVLLM
) -> None:
    plan = RunPlan(
        workload(),
        ("cold",),
        FAST_TYPING,
        3,
        8,
        concurrency=2,
        stagger_s=0.0,
        repeats=1,
        mixed=(MIXED,),
    )
    assert plan.labels == ["cold", "mixed:keystroke", "mixed:cold"]
    results = await run(start_app, fake, plan)
    assert sorted((r["case"], r["mode"]) for r in results) == [
        ("q0", "cold"),
        ("q0", "mixed:keystroke"),
        ("q1", "cold"),
        ("q1", "mixed:cold"),
    ]
    assert all(r["failure"] is None for r in results)
    mixed_keystroke = next(r for r in results if r["mode"] == "mixed:keystroke")
    assert mixed_keystroke["warm_requests"]  # its warm-ups ran, beside a cold typist
    cases = [CaseResult(**r) for r in results]  # type: ignore[arg-type]
    report = build_report(cases, {"settings": {"seed": 1}}, plan.labels)
    assert report["ratios"]["mixed_cold_over_cold_p50"]["units"] == 1  # q1: cold in both arms
