"""The SQL guard's allow-list against a hostile corpus (`tests/data/hostile_sql.jsonl`), and
that corpus run against a real PostgreSQL: nothing written, nothing left running.

The corpus holds more than 300 queries a model (or a user steering one) might produce to read
files, large objects, settings or other sessions, run SQL given as text, sleep, lock, write,
or slip a second statement past the checks with comments and quoting, plus very long and
deeply nested input. Every one must be refused by `validate_sql`. Then each goes through the
service's own path (`answer_query`: extract, check, run) and, to test the layers below the
guard as well, straight to `run_query` as the dataset's reader: the database's checksum is
unchanged and no statement outlives the timeout.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
import sqlglot

from orchestrator.db.server import Database
from orchestrator.errors import DatabaseError
from orchestrator.text_to_sql.allowed import FUNCTIONS
from orchestrator.text_to_sql.contexts import SqlContext, answer_query
from orchestrator.text_to_sql.guard import SqlRefused, validate_sql
from orchestrator.text_to_sql.runner import run_query
from orchestrator.text_to_sql.seed import DEFAULT_DATASET_ROOT, ensure_dataset
from tests.orchestrator.text_to_sql.test_sql import VALID
from tests.orchestrator.text_to_sql.test_sql_runner import checksum

CORPUS_PATH = Path(__file__).resolve().parents[2] / "data" / "hostile_sql.jsonl"
CATEGORIES = {
    "large objects", "file access", "dblink", "sql as text", "sleep", "copy", "locking", "set",
    "writable CTEs", "stacked", "comment and quoting tricks", "very long", "deeply nested",
    "system catalogs", "statements", "settings, sessions, catalog",
}  # fmt: skip
TIMEOUT_MS = 300


def corpus() -> list[dict[str, str]]:
    return [json.loads(line) for line in CORPUS_PATH.read_text().splitlines() if line]


CORPUS = corpus()


def test_the_corpus_is_large_and_covers_every_kind() -> None:
    assert len(CORPUS) >= 300
    assert {row["category"] for row in CORPUS} >= CATEGORIES
    assert len({row["sql"] for row in CORPUS}) == len(CORPUS)
    lo = [row["sql"] for row in CORPUS if row["category"] == "large objects"]
    assert any("lo_get" in sql for sql in lo)
    assert any("lo_lseek" in sql for sql in lo)


@pytest.mark.parametrize(
    "row", CORPUS, ids=[f"{i}-{row['category']}-{row['sql'][:30]}" for i, row in enumerate(CORPUS)]
)
def test_every_hostile_query_is_refused_with_a_reason(row: dict[str, str]) -> None:
    with pytest.raises(SqlRefused) as refused:
        validate_sql(row["sql"])
    assert refused.value.code == "sql_refused"
    assert refused.value.message
    assert "\n" not in refused.value.message


def gold_queries() -> list[str]:
    return [
        json.loads(line)["gold_sql"]
        for path in sorted(DEFAULT_DATASET_ROOT.glob("*/questions.jsonl"))
        if (path.parent / "schema.sql").exists()  # a text-to-SQL dataset
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def test_every_datasets_gold_sql_passes() -> None:
    golds = gold_queries()
    assert golds
    for sql in [*golds, *VALID]:
        assert validate_sql(sql), sql


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_allowed_function_passes_in_the_shape_sqlglot_gives_it(name: str) -> None:
    """`FUNCTIONS` and `TYPED_FUNCTIONS` agree: each allowed name, called the way it parses,
    is let through (whatever class sqlglot turns it into)."""
    for args in ("x", "x, y", "x, y, z", "", "x, y, z, w"):
        sql = f"SELECT {name}({args}) FROM t"
        try:
            sqlglot.parse_one(sql, read="postgres")
        except sqlglot.errors.ParseError:
            continue
        assert validate_sql(sql)
        return
    pytest.fail(f"{name} parses with no argument list tried")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT lo_get(16384)", "function lo_get is not allowed"),
        ("SELECT lo_lseek(0, 0, 0)", "function lo_lseek is not allowed"),
        ("SELECT ts_stat('SELECT pg_sleep(5)')", "function ts_stat is not allowed"),
        ("SELECT ts_rewrite('a'::tsquery, 'SELECT 1')", "function ts_rewrite is not allowed"),
        ("SELECT public.lower('x')", "function public.lower is not allowed"),
        ("SELECT * FROM pg_settings", "table pg_settings is not allowed"),
        ("SELECT $1", "PARAMETER is not allowed"),
        ("SELECT " + "(" * 65 + "1" + ")" * 65, "nested deeper than 64 levels"),
        ("SELECT '" + "x" * 10_001 + "'", "longer than 10000 characters"),
        ("WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", "DELETE is not allowed"),
    ],
)
def test_refusals_say_why(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match=reason):
        validate_sql(sql)


def test_built_ins_may_be_named_in_pg_catalog() -> None:
    assert validate_sql("SELECT pg_catalog.lower('A')") == "SELECT pg_catalog.lower('A')"


# ------------------------------------------------------------------ the corpus on PostgreSQL


@pytest_asyncio.fixture(scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    database = Database(None, tmp_path_factory.mktemp("guard-db"))
    await database.start()
    await ensure_dataset(database, "demo", DEFAULT_DATASET_ROOT / "demo")
    yield database
    await database.stop()


async def still_running(admin_url: str) -> list[Any]:
    """Statements of other connections still active: what outlived its timeout."""
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND state <> 'idle'"
        )
        return await cursor.fetchall()


async def unguarded(reader: str, sql: str) -> str:
    """Below the guard: the reader role, READ ONLY, the statement timeout. What came of it."""
    try:
        await run_query(reader, sql, timeout_ms=TIMEOUT_MS, max_rows=5)
    except (SqlRefused, DatabaseError) as error:  # DatabaseError: e.g. it ended its backend
        return error.message
    return "ran"


@pytest.mark.postgres
async def test_the_corpus_writes_nothing_and_outlives_no_timeout(demo: Database) -> None:
    admin, reader = demo.dataset_url("demo", reader=False), demo.dataset_url("demo", reader=True)
    before = await checksum(admin)
    context = SqlContext("demo", "", reader)
    for row in CORPUS:
        answered = await answer_query(context, f"```sql\n{row['sql']}\n```")
        assert answered.get("refused"), row  # the service's path: never run
        outcome = await unguarded(reader, row["sql"])
        assert "did not answer" not in outcome, row
        assert await still_running(admin) == [], row
    assert await checksum(admin) == before
