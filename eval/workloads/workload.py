"""Workloads: plug-in dataset folders the eval can replay.

Three kinds, told apart by the files in the folder:

- **text-to-sql**: ``schema.sql`` (DDL), ``seed.sql`` (data) and ``questions.jsonl`` with one
  ``{"id", "question", "gold_sql"}`` per line. The folder is loaded into its own PostgreSQL
  database (named after the folder: lowercase, other characters as ``_``) and served as the
  text-to-SQL context of that name; answers are scored for execution accuracy.
- **long-input**: the system prompt (``system.md``, or ``system.include``: one path per line,
  relative to the folder, of files joined into it: a long context made of documents kept
  elsewhere) and ``cases.jsonl`` with one ``{"id", "input"}`` per line, where the input is what
  the user types (long: a bug report, a question about the document). No accuracy score.
- **paste-then-ask**: ``system.md`` (a short system prompt), ``documents/<name>.md`` and
  ``questions.jsonl`` with one ``{"id", "document", "question"}`` per line: the user pastes the
  document into the input in one frame, then types the question and presses Enter. Context
  warming can only reach the system prompt; the paste is the user's own input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestrator.errors import SetupError

WorkloadKind = Literal["text-to-sql", "long-input", "paste-then-ask"]
DATASETS = Path(__file__).resolve().parents[2] / "datasets"
DEFAULT_DATASETS: dict[WorkloadKind, Path] = {
    "text-to-sql": DATASETS / "demo",
    "long-input": DATASETS / "support",
    "paste-then-ask": DATASETS / "library",
}
MAX_DATABASE_NAME = 50  # PostgreSQL's 63 bytes, less the reader role's suffix


@dataclass(frozen=True)
class Case:
    id: str
    text: str  # what the user types
    gold_sql: str | None = None
    pasted: str = ""  # what the user pastes before typing (paste-then-ask)


@dataclass(frozen=True)
class Workload:
    kind: WorkloadKind
    path: Path
    cases: tuple[Case, ...]
    system: str | None = None  # long-input, paste-then-ask: the system prompt

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def database(self) -> str:
        """The database (and context) name a text-to-SQL folder is served under."""
        return database_name(self.path.name)

    def context(self) -> dict[str, Any]:
        """The `start` frame's context for this workload."""
        if self.kind == "text-to-sql":
            return {"database": self.database}
        return {"system": self.system}


def database_name(folder: str) -> str:
    """A valid PostgreSQL dataset name for a folder name: `library-large` -> `library_large`."""
    name = re.sub(r"[^a-z0-9_]", "_", folder.lower())
    if not name[:1].isalpha():
        name = "d_" + name
    return name[:MAX_DATABASE_NAME]


def detect_kind(path: Path) -> WorkloadKind:
    if not path.is_dir():
        raise SetupError(f"no dataset folder at {path}: give --dataset an existing folder")
    if (path / "schema.sql").is_file() and (path / "questions.jsonl").is_file():
        return "text-to-sql"
    if (path / "documents").is_dir() and (path / "questions.jsonl").is_file():
        return "paste-then-ask"
    if (path / "cases.jsonl").is_file() and any(
        (path / name).is_file() for name in ("system.md", "system.include")
    ):
        return "long-input"
    raise SetupError(
        f"{path} is not a dataset: a text-to-SQL one has schema.sql, seed.sql and "
        "questions.jsonl; a long-input one has system.md (or system.include) and cases.jsonl; "
        "a paste-then-ask one has system.md, documents/ and questions.jsonl"
    )


def load_workload(path: Path, cases: int, kind: WorkloadKind | None = None) -> Workload:
    """The first `cases` cases (0: all) of the dataset folder at `path`."""
    found = detect_kind(path)
    if kind is not None and kind != found:
        raise SetupError(f"{path} is a {found} dataset, not {kind}")
    system = None
    if found == "text-to-sql":
        if not (path / "seed.sql").is_file():
            raise SetupError(f"{path}: no seed.sql (an empty file is fine: no rows)")
        rows = read_jsonl(path / "questions.jsonl", ("id", "question", "gold_sql"))
        items = [Case(row["id"], row["question"], row["gold_sql"]) for row in rows]
    elif found == "paste-then-ask":
        rows = read_jsonl(path / "questions.jsonl", ("id", "document", "question"))
        items = [Case(row["id"], row["question"], pasted=document(path, row)) for row in rows]
        system = read_text(path / "system.md")
    else:
        rows = read_jsonl(path / "cases.jsonl", ("id", "input"))
        items = [Case(row["id"], row["input"]) for row in rows]
        system = system_prompt(path)
    if not items:
        raise SetupError(f"{path}: no cases")
    chosen = items[:cases] if cases > 0 else items
    return Workload(found, path, tuple(chosen), system)


def document(path: Path, row: dict[str, str]) -> str:
    file = path / "documents" / f"{row['document']}.md"
    if not file.is_file():
        raise SetupError(
            f"{path}: case {row['id']} names document {row['document']!r}, but "
            f"there is no documents/{row['document']}.md"
        )
    return read_text(file).strip()


def system_prompt(path: Path) -> str:
    if (path / "system.md").is_file():
        return read_text(path / "system.md")
    parts = [line.strip() for line in read_text(path / "system.include").splitlines()]
    files = [(path / part).resolve() for part in parts if part and not part.startswith("#")]
    missing = [str(file) for file in files if not file.is_file()]
    if missing or not files:
        raise SetupError(f"{path}/system.include: no such file(s) {', '.join(missing) or '(none)'}")
    return "\n\n".join(read_text(file).strip() for file in files) + "\n"


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SetupError(f"cannot read {path}: {error}") from None


def read_jsonl(path: Path, keys: tuple[str, ...]) -> list[dict[str, str]]:
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            rows.append({key: str(item[key]) for key in keys})
        except (ValueError, KeyError, TypeError) as error:
            raise SetupError(f"{path}:{number}: not a {'/'.join(keys)} object ({error})") from None
    return rows
