"""The eval's typing replay and report: reproducible, realistic, and keeping the report contract."""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

from eval.replay import MEAN_INTERVAL_S, keystrokes
from eval.report import CaseResult, build_report, write_reports

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
    assert 0.8 * MEAN_INTERVAL_S < statistics.fmean(delays) < 1.3 * MEAN_INTERVAL_S
    assert statistics.median(delays) < statistics.fmean(delays)  # right-skewed
    backspaces = sum(
        1 for before, after in itertools.pairwise(strokes) if len(after.text) < len(before.text)
    )
    assert 0.02 < backspaces / len(strokes) < 0.1


def result(case: str, mode: str, ttft: float, text: str = "SELECT 1", **extra: int) -> CaseResult:
    values = {
        "prompt_tokens": 100,
        "cached_tokens": 0,
        "warm_requests": 0,
        "warm_prefill_tokens": 0,
    }
    values.update(extra)
    return CaseResult(case, mode, ttft, text=text, sql=text, refused=None, correct=True, **values)


def test_report_keeps_the_contract_fields(tmp_path: Path) -> None:
    results = [
        result("a", "cold", 1000.0),
        result("b", "cold", 3000.0, text="SELECT 2"),
        result("a", "keystroke", 100.0, cached_tokens=96, warm_requests=3, warm_prefill_tokens=110),
        result("b", "keystroke", 120.0, text="SELECT 3", cached_tokens=96, warm_prefill_tokens=100),
        result("a", "oracle", 90.0, cached_tokens=96),
        result("b", "oracle", 110.0, cached_tokens=96),
    ]
    meta = {"model": "m", "backend": {"device": "cpu", "block_size": 32}, "dataset": "d",
            "cases": 2, "seed": 1, "max_tokens": 8}  # fmt: skip
    report = build_report(results, meta, ["cold", "keystroke", "oracle"])
    write_reports(report, tmp_path)

    saved = json.loads((tmp_path / "report.json").read_text())
    assert {"model", "backend", "dataset", "cases", "modes", "identical_outputs"} <= saved.keys()
    for row in saved["modes"].values():
        assert {"ttft_ms", "prompt_tokens_mean", "cached_tokens_mean", "warm_requests",
                "warm_prefill_tokens", "ex"} <= row.keys()  # fmt: skip
        assert {"p50", "p95"} <= row["ttft_ms"].keys()
    assert saved["modes"]["cold"]["ttft_ms"]["p50"] == 2000.0
    assert saved["identical_outputs"] == 0.5  # case b differs
    assert saved["figures"]["cold_over_keystroke_p50"] == round(2000 / 110, 3)
    assert saved["figures"]["warm_prefill_over_final_prompt_tokens"] == round(210 / 200, 3)
    assert (tmp_path / "report.md").read_text().startswith("# TTFT eval")
    assert (tmp_path / "ttft.png").read_bytes()[:4] == b"\x89PNG"
