"""Workloads: plug-in dataset folders the eval can replay.

Two kinds, told apart by the files in the folder:

- **text-to-sql**: ``schema.sql`` (DDL), ``seed.sql`` (data) and ``questions.jsonl`` with one
  ``{"id", "question", "gold_sql"}`` per line. The folder is loaded into its own PostgreSQL
  database and served as the text-to-SQL context named after the folder; answers are scored
  for execution accuracy.
- **long-input**: ``system.md`` (the system prompt: a manual, a document) and ``cases.jsonl``
  with one ``{"id", "input"}`` per line, where the input is what the user types (long: a bug
  report, a question about the document). The context is the system prompt; there is no
  accuracy score, only TTFT and identical outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestrator.errors import SetupError

WorkloadKind = Literal["text-to-sql", "long-input"]
DATASETS = Path(__file__).resolve().parent / "datasets"
DEFAULT_DATASETS: dict[WorkloadKind, Path] = {
    "text-to-sql": DATASETS / "demo",
    "long-input": DATASETS / "support",
}


@dataclass(frozen=True)
class Case:
    id: str
    text: str  # what the user types
    gold_sql: str | None = None


@dataclass(frozen=True)
class Workload:
    kind: WorkloadKind
    path: Path
    cases: tuple[Case, ...]
    system: str | None = None  # long-input: the system prompt

    @property
    def name(self) -> str:
        return self.path.name

    def context(self) -> dict[str, Any]:
        """The `start` frame's context for this workload."""
        if self.kind == "text-to-sql":
            return {"database": self.name}
        return {"system": self.system}


def detect_kind(path: Path) -> WorkloadKind:
    if (path / "schema.sql").is_file() and (path / "questions.jsonl").is_file():
        return "text-to-sql"
    if (path / "system.md").is_file() and (path / "cases.jsonl").is_file():
        return "long-input"
    raise SetupError(
        f"{path} is not a dataset: a text-to-SQL one has schema.sql, seed.sql and "
        "questions.jsonl; a long-input one has system.md and cases.jsonl"
    )


def load_workload(path: Path, cases: int, kind: WorkloadKind | None = None) -> Workload:
    """The first `cases` cases (0: all) of the dataset folder at `path`."""
    found = detect_kind(path)
    if kind is not None and kind != found:
        raise SetupError(f"{path} is a {found} dataset, not {kind}")
    if found == "text-to-sql":
        rows = read_jsonl(path / "questions.jsonl", ("id", "question", "gold_sql"))
        items = [Case(row["id"], row["question"], row["gold_sql"]) for row in rows]
        system = None
    else:
        rows = read_jsonl(path / "cases.jsonl", ("id", "input"))
        items = [Case(row["id"], row["input"]) for row in rows]
        system = (path / "system.md").read_text()
    if not items:
        raise SetupError(f"{path}: no cases")
    chosen = items[:cases] if cases > 0 else items
    return Workload(found, path, tuple(chosen), system)


def read_jsonl(path: Path, keys: tuple[str, ...]) -> list[dict[str, str]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            rows.append({key: str(item[key]) for key in keys})
        except (ValueError, KeyError, TypeError) as error:
            raise SetupError(f"{path}:{number}: not a {'/'.join(keys)} object ({error})") from None
    return rows
