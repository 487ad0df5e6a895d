"""README's figure tables are what the committed reports under docs/results/ say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from eval.readme_tables import ROOT, main, regenerate
from tests.unit.test_eval_parts import sample_report


def test_every_marked_readme_table_matches_its_committed_report() -> None:
    readme = (ROOT / "README.md").read_text()
    text, differing = regenerate(readme, ROOT / "docs" / "results")
    assert differing == [], "run `python -m eval.readme_tables --write` after new results"
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
