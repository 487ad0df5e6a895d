"""The eval's replay, workloads, report and comparison: reproducible, honest, to contract."""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from eval.harness.stack import eval_settings
from eval.reports.compare import compare_main
from eval.reports.report import build_report, write_reports
from eval.reports.results import CaseResult
from eval.workloads.replay import DICTATION, TYPING, Replay, SubmitPause, keystrokes
from eval.workloads.workload import DATASETS, DEFAULT_DATASETS, load_workload
from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.errors import SetupError

QUESTION = "which customers placed more than three orders in the spring, by region and tier"


def test_replay_is_seeded_and_ends_with_the_question() -> None:
    first, again, other = keystrokes(QUESTION, 1), keystrokes(QUESTION, 1), keystrokes(QUESTION, 2)
    assert first == again
    assert first != other
    assert first[-1].text == QUESTION
    for before, after in itertools.pairwise(first):
        assert abs(len(after.text) - len(before.text)) == 1  # one key at a time


def test_replay_intervals_and_corrections_look_like_people() -> None:
    text = QUESTION * 20
    strokes = keystrokes(text, 3)
    delays = [stroke.delay_s for stroke in strokes]
    assert 0.8 * TYPING.mean_interval_s < statistics.fmean(delays) < 1.3 * TYPING.mean_interval_s
    assert statistics.median(delays) < statistics.fmean(delays)  # right-skewed
    backspaces = sum(
        1 for before, after in itertools.pairwise(strokes) if len(after.text) < len(before.text)
    )
    assert 0.02 < backspaces / len(strokes) < 0.1


def test_speedup_divides_every_interval_and_the_enter_key() -> None:
    slow, fast = Replay("typing", 1.0), Replay("typing", 4.0)
    pairs = zip(slow.events(QUESTION, 5), fast.events(QUESTION, 5), strict=True)
    for a, b in pairs:
        assert a.text == b.text
        assert b.delay_s == pytest.approx(a.delay_s / 4)
    assert fast.submit_delay(QUESTION, 5) == pytest.approx(slow.submit_delay(QUESTION, 5) / 4)


def test_enter_is_one_drawn_interval_and_a_number_is_exact() -> None:
    enters = [Replay().submit_delay(f"{QUESTION} {n}", 1) for n in range(400)]
    assert 0.8 * TYPING.mean_interval_s < statistics.fmean(enters) < 1.2 * TYPING.mean_interval_s
    assert len(set(enters)) > 300  # drawn, not a constant
    fixed = Replay("typing", 8.0, SubmitPause.parse("0.8"))
    assert fixed.submit_delay(QUESTION, 1) == 0.8  # seconds are never scaled
    assert SubmitPause.parse("ENTER").label == "enter"
    assert SubmitPause.parse("0.8").label == "0.8s"
    for bad in ("soon", "-1", "1e9"):
        with pytest.raises(ValueError, match="submit pause"):
            SubmitPause.parse(bad)
    with pytest.raises(ValueError, match="speed-up"):
        Replay("typing", 0.0)


def test_dictation_sends_whole_words_at_speech_rate() -> None:
    text = " ".join([QUESTION] * 10)
    events = Replay("dictation").events(text, 2)
    assert events[-1].text == text
    assert len(events) == len(text.split())
    for before, after in itertools.pairwise(events):
        assert after.text.startswith(before.text)
        assert " " not in after.text[len(before.text) :].strip()  # one word at a time
    mean = statistics.fmean(e.delay_s for e in events)
    assert 0.8 * DICTATION.mean_interval_s < mean < 1.2 * DICTATION.mean_interval_s


def test_settings_record_the_replay() -> None:
    settings = Replay("dictation", 2.0, SubmitPause(0.8)).settings()
    assert settings["replay"] == "dictation"
    assert settings["typing_speedup"] == 2.0
    assert settings["submit_pause"] == "0.8s"
    assert settings["typing_distribution"]["mean_interval_s"] == DICTATION.mean_interval_s
    assert "Ruan" in settings["typing_distribution"]["source"]


def test_both_workloads_load_and_a_bad_folder_says_why(tmp_path: Path) -> None:
    sql = load_workload(DEFAULT_DATASETS["text-to-sql"], 3)
    assert sql.kind == "text-to-sql"
    assert len(sql.cases) == 3
    assert all(case.gold_sql for case in sql.cases)
    assert sql.context() == {"database": "demo"}
    long = load_workload(DEFAULT_DATASETS["long-input"], 0)
    assert long.kind == "long-input"
    assert len(long.cases) >= 8
    assert all(len(case.text) >= 1200 for case in long.cases)  # 300+ tokens typed
    assert long.context()["system"]
    with pytest.raises(SetupError, match="not a dataset"):
        load_workload(tmp_path, 1)
    (tmp_path / "system.md").write_text("x")
    (tmp_path / "cases.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(SetupError, match=r"cases\.jsonl:1"):
        load_workload(tmp_path, 1)
    with pytest.raises(SetupError, match="is a long-input dataset"):
        load_workload(DEFAULT_DATASETS["long-input"], 1, "text-to-sql")


def result(
    case: str,
    mode: str,
    ttft: float | None,
    text: str = "SELECT 1",
    scorecard: dict[str, Any] | None = None,
    **extra: int,
) -> CaseResult:
    values = {
        "prompt_tokens": 100,
        "cached_tokens": 0,
        "warm_requests": 0,
        "warm_prefill_tokens": 0,
        "typed_tokens": 20,
    }
    values.update(extra)
    failure = None if ttft is not None else "no answer"
    return CaseResult(
        case,
        mode,
        ttft,
        text=text,
        sql=text,
        correct=True,
        failure=failure,
        scorecard=scorecard,
        **values,
    )


def card(warmed: int, hit: int, spent: int, wasted: int, saved: float | None) -> dict[str, Any]:
    return {
        "warmed_tokens": warmed,
        "hit_tokens": hit,
        "warm_prefill_tokens": spent,
        "wasted_prefill_tokens": wasted,
        "ttft_ms": 100.0,
        "cold_ttft_ms": None,
        "saved_ms": saved,
    }


META = {
    "model": "m",
    "backend": {"device": "cpu", "block_size": 32},
    "dataset": "d",
    "workload": "text-to-sql",
    "cases": 2,
    "settings": {
        **Replay().settings(),
        "seed": 1,
        "max_tokens": 8,
        "concurrency": 1,
        "context_cache": "own",
    },
}


def sample_report() -> dict[str, object]:
    results = [
        result("a", "cold", 1000.0),
        result("b", "cold", 3000.0, text="SELECT 2"),
        result("a", "static", 300.0, warm_requests=1, warm_prefill_tokens=80),
        result("b", "static", 500.0, text="SELECT 2", warm_requests=1, warm_prefill_tokens=80),
        result("a", "keystroke", 100.0, cached_tokens=96, warm_requests=3, warm_prefill_tokens=110),
        result("b", "keystroke", 120.0, text="SELECT 3", cached_tokens=96, warm_prefill_tokens=100),
        result("a", "oracle", 90.0, cached_tokens=96),
        result("b", "oracle", None, text="", scorecard=card(0, 0, 0, 0, 1.0)),  # failed: listed
    ]
    cards = {"a": card(96, 96, 110, 14, None), "b": card(64, 96, 100, 40, 880.5)}
    results = [
        dataclasses.replace(r, scorecard=cards[r.case]) if r.mode == "keystroke" else r
        for r in results
    ]
    engine = {
        "static": {
            "source": "kv-events",
            "warm_prefill_tokens": 128,
            "warm_prefill_tokens_per_final": 64.0,
            "typed_warm_prefill_tokens": 0,
        },
        "keystroke": {
            "source": "kv-events",
            "warm_prefill_tokens": 320,
            "warm_prefill_tokens_per_final": 160.0,
            "typed_warm_prefill_tokens": 64,
        },
    }
    modes = ["cold", "static", "keystroke", "oracle"]
    return build_report(results, META, modes, {"cold": 0.5}, engine)


def test_report_keeps_the_contract_fields(tmp_path: Path) -> None:
    write_reports(sample_report(), tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert {
        "model",
        "backend",
        "dataset",
        "cases",
        "modes",
        "identical_outputs",
        "settings",
    } <= saved.keys()
    assert {"submit_pause", "concurrency", "typing_distribution", "seed", "max_tokens"} <= (
        saved["settings"].keys()
    )
    for row in saved["modes"].values():
        assert {
            "ttft_ms",
            "prompt_tokens_mean",
            "cached_tokens_mean",
            "warm_requests",
            "warm_prefill_tokens",
            "ex",
            "failures",
            "identical_outputs",
        } <= row.keys()
        assert {"p50", "p95"} <= row["ttft_ms"].keys()
    assert saved["modes"]["cold"]["ttft_ms"]["p50"] == 2000.0
    assert saved["modes"]["cold"]["engine_busy_share"] == 0.5
    assert saved["identical_outputs"] == 0.5  # case b differs in keystroke mode
    assert saved["modes"]["static"]["identical_outputs"] == 1.0
    assert saved["figures"]["keystroke_over_static_p50"] == round(110 / 400, 3)
    # what the engine computed past the context's blocks in keystroke mode, per typed token
    assert saved["figures"]["typed_text_warm_prefill_per_typed_token"] == round(64 / 40, 3)
    assert saved["figures"]["context_warm_prefill_tokens_per_case"] == 64.0
    assert saved["modes"]["keystroke"]["engine_warm"]["warm_prefill_tokens"] == 320
    assert saved["modes"]["cold"]["engine_warm"] is None  # not counted: not 0
    assert saved["ratios"]["keystroke_over_static_p50"]["units"] == 2
    assert saved["modes"]["keystroke"]["scorecard"] == {
        "warmed_tokens": 160,
        "hit_tokens": 192,
        "warm_prefill_tokens": 210,
        "wasted_prefill_tokens": 54,
        "saved_ms": 880.5,
        "saved_ms_cases": 1,
        "cases": 2,
    }
    assert saved["modes"]["oracle"]["scorecard"]["saved_ms"] is None  # the failed case is out
    assert saved["modes"]["cold"]["scorecard"]["cases"] == 0  # no scorecard, nothing summed
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# TTFT eval")
    assert "| keystroke | 160 | 192 | 210 | 54 | 880.5 (1) |" in markdown
    assert "| cold | n/a | n/a | n/a | n/a | n/a (0) |" in markdown
    assert (tmp_path / "ttft.png").read_bytes()[:4] == b"\x89PNG"


def test_a_case_without_ttft_is_a_failure_not_zero() -> None:
    report = sample_report()
    oracle = report["modes"]["oracle"]  # type: ignore[index]
    assert oracle["ttft_ms"]["p50"] == 90.0  # the failed case is not in the percentiles
    assert oracle["failures"] == [{"case": "b", "repeat": 0, "reason": "no answer"}]
    assert report["failures"] == [
        {"mode": "oracle", "case": "b", "repeat": 0, "reason": "no answer"}
    ]


def test_compare_prints_two_reports_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = sample_report(), sample_report()
    second["settings"] = {**META["settings"], "submit_pause": "0.8s"}  # type: ignore[dict-item]
    write_reports(first, tmp_path / "a")
    write_reports(second, tmp_path / "b")
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "| submit_pause **≠** | enter | 0.8s |" in out
    assert "| keystroke | TTFT p50 ms | 110 | 110 | 1.000 |" in out
    assert "| keystroke | wasted prefill tokens | 54 | 54 | 1.000 |" in out
    both = "0.275 [0.240, 0.333] (2 x 1)"  # 100/300, 110/400, 120/500 by resample
    assert f"| keystroke_over_static_p50 | {both} | {both} |" in out
    with pytest.raises(SystemExit) as usage:  # one report only: argparse's usage error
        compare_main([str(tmp_path / "a")])
    assert usage.value.code == 2
    with pytest.raises(SystemExit, match="cannot read a report"):
        compare_main([str(tmp_path / "a"), str(tmp_path / "nowhere")])


def test_the_paste_and_long_context_datasets_fit_the_model(renderer: PromptRenderer) -> None:
    paste = load_workload(DEFAULT_DATASETS["paste-then-ask"], 0)
    assert paste.kind == "paste-then-ask"
    assert paste.context() == {"system": paste.system}
    for case in paste.cases:
        assert 10 <= len(case.text.split()) <= 40  # a question typed after the paste
        assert 2000 <= len(renderer.encode(case.pasted)) <= 8192 - 512
    demo = load_workload(DEFAULT_DATASETS["text-to-sql"], 1)
    assert demo.kind == "text-to-sql"
    long = load_workload(DATASETS / "library-context", 0)
    assert long.kind == "long-input"
    assert long.system is not None
    context = len(renderer.encode(long.system))
    assert 4 * 1850 <= context <= 8192 - 96 - 200  # 4x the demo's schema, with room to answer


def test_warm_pieces_are_summed_per_mode_when_the_done_frames_carry_them() -> None:
    pieces = [{"sent": 5, "landed": 3, "cancelled": 2}, {"sent": 1, "landed": 1, "cancelled": 0}]
    results = [
        dataclasses.replace(result(case, "keystroke", 100.0), warm_pieces=p, repeat=r)
        for (case, r), p in zip((("a", 0), ("a", 1)), pieces, strict=True)
    ] + [result("a", "static", 200.0)]
    report = build_report(results, META, ["keystroke", "static"])
    assert report["modes"]["keystroke"]["warm_pieces"] == {
        "sent": 6,
        "landed": 4,
        "cancelled": 2,
        "mean": {"sent": 3.0, "landed": 2.0, "cancelled": 1.0},
        "cases": 2,
    }
    assert report["modes"]["static"]["warm_pieces"] is None  # absent: not zero
    assert report["ratios"]["keystroke_over_static_p50"]["units"] == 1  # (a, 0) only is paired


def test_the_eval_orchestrator_does_not_rewarm_earlier_runs_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Earlier runs' popular prefixes are in the data folder's trace; re-warming them at start
    would keep the engine busy through the first cases. The user's own settings still apply."""
    monkeypatch.setenv("PREFILL_REWARM_TOP_K", "8")
    monkeypatch.setenv("PREFILL_TYPING_PAUSE_MS", "321")
    settings = eval_settings(tmp_path, speculating=False)
    assert settings.rewarm_top_k == 0
    assert settings.typing_pause_ms == 321
    assert settings.datasets_dir == tmp_path
