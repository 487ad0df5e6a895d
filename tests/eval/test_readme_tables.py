"""README's figure tables are what the committed reports under docs/results/ say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from eval.reports.readme_tables import ROOT, main, regenerate, speculation_view
from tests.eval.test_parts import sample_report


def test_every_marked_readme_table_matches_its_committed_report() -> None:
    readme = (ROOT / "README.md").read_text()
    text, differing = regenerate(readme, ROOT / "docs" / "results")
    assert differing == [], "run `python -m eval readme-tables --write` after new results"
    assert text == readme


def test_a_table_that_differs_from_its_report_fails_and_write_repairs_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "demo-check").mkdir(parents=True)
    (results / "demo-check" / "report.json").write_text(json.dumps(sample_report()))
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- results: demo-check modes -->\n| stale |\n<!-- /results -->\n"
        "<!-- results: demo-check ratios -->\n<!-- /results -->\nend\n"
    )
    args = ["--readme", str(readme), "--results", str(results)]
    assert main(args) == 1
    assert main([*args, "--write"]) == 0
    written = readme.read_text()
    assert "| keystroke | 110.0 | 119.0 | 96 / 100 | 160 | 0.5 |" in written
    assert "| keystroke_over_static_p50 | 0.275 | 0.240 to 0.333 | 2 x 1 |" in written
    assert written.startswith("intro\n")
    assert written.endswith("end\n")
    assert main(args) == 0  # now consistent
    shutil.rmtree(results / "demo-check")
    assert main(args) == 1  # a table whose report is gone fails too


def speculating_report() -> dict[str, Any]:
    def result(mode: str, case: str, ttft: float, speculative: bool) -> dict[str, Any]:
        return {
            "mode": mode,
            "case": case,
            "repeat": 0,
            "ttft_ms": ttft,
            "speculative": speculative,
        }

    def row(p50: float, answers: int, wasted: int) -> dict[str, Any]:
        return {
            "ttft_ms": {"p50": p50},
            "identical_outputs": 1.0,
            "speculative_answers": answers,
            "speculation_wasted_tokens": wasted,
        }

    results = [
        result("oracle", "q1", 100.0, False),
        result("oracle", "q2", 200.0, False),
        result("speculate", "q1", 5.0, True),
        result("speculate", "q2", 300.0, False),
        result("keystroke", "q1", 150.0, False),
    ]
    return {
        "settings": {"seed": 7},
        "results": results,
        "modes": {
            "speculate": row(152.5, 1, 12),
            "oracle": row(150.0, 0, 0),
            "keystroke": row(150.0, 0, 0),
        },
    }


def test_the_speculation_view_sets_each_speculating_mode_against_the_oracles_floor() -> None:
    lines = speculation_view(speculating_report())
    assert len(lines) == 3  # the header, its rule, and the one mode that speculates
    mode, p50, versus, identical, attached, wasted = (c.strip() for c in lines[2].split("|")[1:-1])
    assert (mode, p50, identical, attached, wasted) == ("speculate", "152.5", "1.0", "1 of 2", "12")
    assert versus.startswith("1.017 [")  # median(5, 300) / median(100, 200), paired by case
