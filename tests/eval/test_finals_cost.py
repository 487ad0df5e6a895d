"""`python -m eval finals-cost`: the idle engine's cost line and each final's ratio to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.reports.finals_cost import idle_line, main, ratios


def result(mode: str, prompt: int, cached: int, ttft: float | None) -> dict[str, object]:
    return {"mode": mode, "prompt_tokens": prompt, "cached_tokens": cached, "ttft_ms": ttft}


def test_the_idle_line_is_the_least_squares_line() -> None:
    idle = {"results": [result("cold", 1000, 1000, 100.0), result("cold", 2000, 1000, 5100.0)]}
    idle["results"] += [result("static", 600, 100, 2600.0), result("cold", 50, 0, None)]
    line = idle_line(idle)
    assert (line.intercept_ms, line.ms_per_token) == pytest.approx((100.0, 5.0))
    with pytest.raises(ValueError, match="different uncached"):
        idle_line({"results": [result("cold", 20, 10, 1.0), result("static", 10, 0, 2.0)]})


def test_a_final_that_waited_for_others_has_a_ratio_over_one() -> None:
    report = {
        "results": [
            result("keystroke", 1900, 1880, 400.0),  # 20 uncached: 200 ms alone
            result("static", 1900, 1500, 4200.0),  # 400 uncached: 2,100 ms alone
            result("static", 1900, 0, None),  # a failure has no ratio
        ]
    }
    assert ratios(report, 100.0, 5.0) == {"keystroke": [2.0], "static": [2.0]}


def test_the_command_prints_a_row_per_report_and_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    idle = {"results": [result("cold", 1000, 0, 5100.0), result("keystroke", 1000, 1000, 100.0)]}
    busy = {"results": [result("keystroke", 1000, 800, 2202.0)]}  # 200 uncached: 1,100 alone
    (tmp_path / "idle").mkdir()
    (tmp_path / "idle" / "report.json").write_text(json.dumps(idle))
    (tmp_path / "busy.json").write_text(json.dumps(busy))
    assert main([str(tmp_path / "idle"), str(tmp_path / "busy.json")]) == 0
    out = capsys.readouterr().out
    assert "ttft ≈ 100 ms + 5.000 ms x uncached tokens (2 finals)" in out
    assert f"| {tmp_path / 'busy.json'} | keystroke | 1 | 2.00 | 2.00 | 2.00 |" in out
    assert main([str(tmp_path / "missing"), str(tmp_path / "busy.json")]) == 2
