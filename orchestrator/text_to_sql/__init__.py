"""Text-to-SQL: a dataset's schema as a cacheable system prompt, the model's answer run as SQL.

- `prompt.py`: the schema prompt and the openings that frame the question and the answer.
- `extract.py`: the SQL out of a model's answer; `guard.py`: one read-only SELECT, or a refusal.
- `runner.py`: the query run as the dataset's reader: read-only, bounded, rolled back.
- `contexts.py`: the datasets a server offers its sessions, and the `done` frame's SQL fields.
- `seed.py`: a dataset's database, loaded and locked down (the server itself is `orchestrator.db`).
- `cli.py` (`python -m orchestrator.text_to_sql seed`): seed every dataset.
- `lexing.py`, `values.py`: SQL text cut into statements; values made JSON-safe.
"""
