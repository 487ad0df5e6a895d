"""What a run measured, reported: case results and quantiles (`results.py`), bootstrap intervals
(`intervals.py`), the headline figures (`figures.py`), `report.json` (`report.py`), `report.md`
and the plot (`markdown.py`), two reports side by side (`compare.py`), README tables
(`readme_tables.py`) and each final against its own cost (`finals_cost.py`). Imports no other
room."""
