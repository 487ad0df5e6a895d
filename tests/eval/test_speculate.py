"""The eval's `speculate` mode: keystroke warm-ups plus answers before Enter, the only mode whose
sessions may speculate; its report fields (attach rate, wasted generated tokens, outputs
identical to cold's), from hand-made case results and on the fake vLLM."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from eval.harness import modes
from eval.harness.modes import MODES, SPECULATE, Client
from eval.harness.rounds import MIXED_SPECULATE
from eval.harness.runner import Runner, RunPlan, Upstream
from eval.harness.stack import speculation_for
from eval.reports.report import build_report, write_reports
from eval.reports.results import CaseResult
from eval.scenarios.suites import default_suite, load_suite, summary_rows, write_summary
from eval.workloads.replay import Replay, SubmitPause
from eval.workloads.workload import Case, Workload
from testkit.fake_vllm import FakeVLLM
from tests.eval.test_parts import META, result
from tests.helpers import SYSTEM
from tests.sessions import Defaults, StartApp, salt

QUESTIONS = (
    "Which customers placed more than three orders last month, and in which regions?",
    "How many invoices are still open, and what is the value of the oldest one?",
)
PAUSED_TYPING = Replay("typing", 200.0, SubmitPause(0.8))  # fast keys, then a pause to submit


@pytest.fixture(scope="module")
def orchestrator_defaults() -> Defaults:
    return Defaults(strict_fake=True)  # the eval counts typed tokens with vLLM's /tokenize


def speculating(case: str, ttft: float, text: str, attached: bool, wasted: int) -> CaseResult:
    found = result(case, SPECULATE, ttft, text=text)
    return dataclasses.replace(found, speculative=attached, speculation_wasted_tokens=wasted)


def speculate_report() -> dict[str, Any]:
    results = [
        result("a", "cold", 1000.0),
        result("b", "cold", 3000.0, text="SELECT 2"),
        result("a", "keystroke", 100.0),
        result("b", "keystroke", 120.0, text="SELECT 2"),
        speculating("a", 20.0, "SELECT 1", attached=True, wasted=0),
        speculating("b", 110.0, "SELECT 3", attached=False, wasted=2),
        speculating("c", 50.0, "SELECT 4", attached=True, wasted=0),  # no cold answer for c
    ]
    return build_report(results, META, ["cold", "keystroke", SPECULATE])


def test_each_mode_counts_its_speculative_answers_and_the_tokens_thrown_away() -> None:
    report = speculate_report()
    spec, keystroke = report["modes"][SPECULATE], report["modes"]["keystroke"]
    assert (spec["speculative_answers"], spec["attach_rate"]) == (2, round(2 / 3, 4))
    assert spec["speculation_wasted_tokens"] == 2
    assert spec["identical_outputs"] == 0.5  # of a and b (c has no cold answer): a only
    assert (keystroke["speculative_answers"], keystroke["attach_rate"]) == (0, 0.0)
    assert keystroke["speculation_wasted_tokens"] == 0
    assert "speculate_over_keystroke_p50" in report["ratios"]
    assert "speculate_over_static_p50" not in report["ratios"]  # static did not run


def test_every_case_says_whether_it_answered_as_cold_did() -> None:
    rows = {(r["case"], r["mode"]): r for r in speculate_report()["results"]}
    assert rows[("a", SPECULATE)]["speculative"] is True
    assert rows[("a", SPECULATE)]["identical_to_cold"] is True
    assert rows[("b", SPECULATE)]["identical_to_cold"] is False
    assert rows[("b", SPECULATE)]["speculation_wasted_tokens"] == 2
    assert rows[("c", SPECULATE)]["identical_to_cold"] is None  # nothing to compare with
    assert rows[("b", "keystroke")]["identical_to_cold"] is True
    assert rows[("a", "cold")]["identical_to_cold"] is True


def test_the_markdown_shows_speculation_only_when_a_mode_speculated(tmp_path: Path) -> None:
    write_reports(speculate_report(), tmp_path / "with")
    markdown = (tmp_path / "with" / "report.md").read_text()
    assert "| speculate | 2 / 3 | 0.67 | 2 | 0.50 |" in markdown
    assert "| keystroke | 0 / 2 |" not in markdown  # a mode that never speculated: no row
    plain = [result("a", "cold", 1000.0), result("a", "keystroke", 100.0)]
    write_reports(build_report(plain, META, ["cold", "keystroke"]), tmp_path / "without")
    assert "Answers before Enter" not in (tmp_path / "without" / "report.md").read_text()


def test_the_suite_summary_gives_the_attach_rate_of_speculating_modes(tmp_path: Path) -> None:
    rows = summary_rows("demo-enter", speculate_report())
    by_mode = {row["mode"]: row for row in rows}
    assert by_mode[SPECULATE]["attach_rate"] == round(2 / 3, 4)
    write_summary(rows, tmp_path)
    lines = (tmp_path / "summary.md").read_text().splitlines()
    speculate_line = next(line for line in lines if f"| {SPECULATE} |" in line)
    keystroke_line = next(line for line in lines if "| keystroke |" in line)
    assert "| 0.67 (2) |" in speculate_line
    assert "| 1.0 |  | 0 |" in keystroke_line  # identical, no attach rate, failures


def test_the_suites_run_speculate_where_asked_and_only_then_the_orchestrator_speculates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = {spec.name: spec for spec in default_suite(quick=True)}
    speculating_runs = {name for name, spec in runs.items() if SPECULATE in spec.modes}
    assert speculating_runs == {
        "demo-enter",
        "demo-pause",
        "support-enter-x8",
        "library-paste-enter",
        "library-context-enter",
    }
    mixed = [spec for spec in load_suite(quick=True) if spec.mixed]
    assert mixed
    assert all(MIXED_SPECULATE in spec.mixed and spec.plan().speculates for spec in mixed)
    assert (
        not dataclasses.replace(runs["demo-enter"], modes=("cold", "keystroke")).plan().speculates
    )
    monkeypatch.delenv("PREFILL_SPECULATE", raising=False)
    assert speculation_for(True) == {"speculate": "on"}
    assert speculation_for(False) == {"speculate": "off"}
    monkeypatch.setenv("PREFILL_SPECULATE", "idle")
    assert speculation_for(True) == {}  # the environment decides


def workload() -> Workload:
    cases = tuple(Case(f"q{i}", text) for i, text in enumerate(QUESTIONS))
    return Workload("long-input", Path("speculate"), cases, SYSTEM)


async def test_only_the_speculate_mode_speculates_on_an_orchestrator_that_would(
    start_app: StartApp, fake: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts: list[dict[str, Any]] = []
    send = Client.send

    async def recording(client: Client, frame: dict[str, Any]) -> None:
        if frame["type"] == "start":
            starts.append(frame)
        await send(client, frame)

    monkeypatch.setattr(modes.Client, "send", recording)
    app = await start_app(speculate="on", speculate_tokens=2)
    upstream = Upstream(
        app.url.replace("http://", "ws://") + "/ws/session",
        fake.url,
        lambda namespace: salt(namespace=namespace),
    )

    async def no_score(case: Case, done: dict[str, Any]) -> bool | None:
        return None

    runner = Runner(RunPlan(workload(), MODES, PAUSED_TYPING, 3, 8, repeats=1), upstream, no_score)
    outcome = await runner.run()
    assert all(r.failure is None for r in outcome.results), [r.failure for r in outcome.results]
    # eval-<run>-<case>-<label>-r<repeat>: every session but the speculate mode's opts out
    assert {(s["cache_namespace"].split("-")[3], s["speculate"]) for s in starts} == {
        (mode, mode == SPECULATE) for mode in MODES
    }
    speculated_salts = {r.body["cache_salt"] for r in fake.finals if r.body.get("return_token_ids")}
    speculate_salts = {s for (label, _, _), s in runner.salts.items() if label == SPECULATE}
    assert speculated_salts == speculate_salts  # both cases speculated; no other mode did
    report = build_report(outcome.results, {"settings": {"seed": 1}}, list(MODES))
    assert report["modes"][SPECULATE]["attach_rate"] == 1.0  # submitted after the pause
    assert report["modes"][SPECULATE]["identical_outputs"] == 1.0
    assert report["modes"]["keystroke"]["speculative_answers"] == 0
