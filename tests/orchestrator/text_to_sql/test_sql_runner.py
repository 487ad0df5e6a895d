"""Text-to-SQL's run_query on a real PostgreSQL: rows, JSON-safe values, limits, timeouts,
read-only always; the demo database unchanged after every test."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
import pytest_asyncio

from orchestrator.db.server import Database
from orchestrator.errors import DatabaseError
from orchestrator.text_to_sql.guard import SqlRefused, validate_sql
from orchestrator.text_to_sql.runner import QueryResult, run_query
from orchestrator.text_to_sql.seed import DEFAULT_DATASET_ROOT, ensure_dataset

pytestmark = pytest.mark.postgres

# ------------------------------------------------------------------- run_query on PostgreSQL


async def checksum(url: str) -> dict[str, str]:
    """An md5 of every user table's rows, by table, plus the large objects' count."""
    sums: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        tables = await (
            await conn.execute(
                "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables"
                " WHERE table_type = 'BASE TABLE'"
                " AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
        ).fetchall()
        for (table,) in tables:
            rows = "coalesce(string_agg(t::text, '|' ORDER BY t::text), '')"
            query = f"SELECT md5({rows}) FROM {table} t"
            row = await (await conn.execute(query.encode())).fetchone()
            assert row is not None
            sums[table] = row[0]
        row = await (await conn.execute("SELECT count(*) FROM pg_largeobject_metadata")).fetchone()
        assert row is not None
        sums["large objects"] = str(row[0])
    return sums


@pytest_asyncio.fixture(scope="module")
async def db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    database = Database(None, tmp_path_factory.mktemp("sql-db"))
    await database.start()
    yield database
    await database.stop()


@pytest_asyncio.fixture(scope="module")
async def seeded(db: Database) -> dict[str, str]:
    """Seeds the demo dataset; the checksum of its contents before any test ran."""
    await ensure_dataset(db, "demo", DEFAULT_DATASET_ROOT / "demo")
    return await checksum(db.dataset_url("demo", reader=False))


@pytest.fixture
def reader(db: Database, seeded: dict[str, str]) -> str:
    return db.dataset_url("demo", reader=True)


@pytest.fixture
def admin(db: Database, seeded: dict[str, str]) -> str:
    return db.dataset_url("demo", reader=False)


async def a_table(reader: str) -> str:
    tables = await run_query(
        reader,
        "SELECT format('%I', table_name) FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    assert tables.columns == ["format"]
    assert tables.rows
    return str(tables.rows[0][0])


async def test_run_query_returns_rows(reader: str) -> None:
    got = await run_query(reader, "SELECT 1 AS one, 'two' AS two")
    assert got == QueryResult(["one", "two"], [[1, "two"]], truncated=False, ms=got.ms)
    assert got.ms >= 0
    table = await a_table(reader)
    rows = await run_query(reader, f"SELECT * FROM {table} LIMIT 2")
    assert rows.columns
    assert 1 <= len(rows.rows) <= 2
    json.dumps(rows.rows, allow_nan=False)


async def test_run_query_values_are_json_safe(reader: str) -> None:
    got = await run_query(
        reader,
        "SELECT g, g * 1.25::numeric AS money, DATE '2024-01-01' + g AS day,"
        " TIMESTAMPTZ '2024-01-01 00:00+00' AS at, '\\x0aff'::bytea AS raw,"
        " ARRAY[g, g] AS pair, jsonb_build_object('g', g) AS doc, NULL AS nothing,"
        " 'a%' LIKE 'a%%' AS percent"
        " FROM generate_series(1, 2) AS g ORDER BY g",
    )
    assert got.columns == ["g", "money", "day", "at", "raw", "pair", "doc", "nothing", "percent"]
    assert got.rows[0] == [
        1,
        1.25,
        "2024-01-02",
        "2024-01-01T00:00:00+00:00",
        "\\x0aff",
        [1, 1],
        {"g": 1},
        None,
        True,
    ]
    json.dumps(got.rows, allow_nan=False)


async def test_run_query_truncates(reader: str) -> None:
    cut = await run_query(
        reader, "SELECT g FROM generate_series(1, 50) AS g ORDER BY g", max_rows=10
    )
    assert cut.rows == [[g] for g in range(1, 11)]
    assert cut.truncated
    whole = await run_query(reader, "SELECT g FROM generate_series(1, 50) AS g", max_rows=50)
    assert len(whole.rows) == 50
    assert not whole.truncated
    huge = await run_query(reader, "SELECT generate_series(1, 100000000) AS g", max_rows=5)
    assert len(huge.rows) == 5  # a server-side cursor: the rest is never computed
    assert huge.truncated


async def test_run_query_times_out(reader: str) -> None:
    started = time.monotonic()
    with pytest.raises(SqlRefused, match=r"^the query ran longer than 300 ms$"):
        await run_query(reader, "SELECT pg_sleep(5)", timeout_ms=300)
    assert time.monotonic() - started < 3
    assert (await run_query(reader, "SELECT 1")).rows == [[1]]  # nothing left behind


async def test_run_query_gives_up_when_the_server_does_not_stop_it(
    reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "orchestrator.text_to_sql.runner.GRACE_S", -0.7
    )  # the client's deadline comes first
    started = time.monotonic()
    with pytest.raises(DatabaseError, match=r"^the database did not answer within 1000 ms$"):
        await run_query(reader, "SELECT pg_sleep(5)", timeout_ms=1000)
    assert time.monotonic() - started < 3
    monkeypatch.undo()
    assert (await run_query(reader, "SELECT 1")).rows == [[1]]


@pytest.mark.parametrize("role", ["reader", "admin"])
async def test_run_query_is_read_only_even_for_the_admin(
    role: str, reader: str, admin: str
) -> None:
    url = reader if role == "reader" else admin
    with pytest.raises(SqlRefused, match="read-only transaction"):
        await run_query(url, "SELECT lo_create(0)")
    table = await a_table(reader)
    with pytest.raises(SqlRefused, match="read-only transaction"):
        await run_query(url, f"SELECT * FROM {table} FOR UPDATE")
    for write in (
        f"DELETE FROM {table}",
        f"INSERT INTO {table} DEFAULT VALUES",
        f"WITH d AS (DELETE FROM {table} RETURNING 1) SELECT count(*) FROM d",
        f"SELECT 1; DELETE FROM {table}",
        f"COMMIT; DELETE FROM {table}",
        "CREATE TEMP TABLE scratch (a int)",
    ):
        with pytest.raises(SqlRefused, match=r"^the database rejected the query: "):
            await run_query(url, write)


async def test_run_query_reports_database_errors(reader: str) -> None:
    with pytest.raises(SqlRefused, match=r'^the database rejected the query: relation "nope"'):
        await run_query(reader, "SELECT * FROM nope")
    with pytest.raises(SqlRefused, match=r"^the database rejected the query: division by zero$"):
        await run_query(reader, "SELECT 1 / 0")


async def test_validated_queries_run(reader: str) -> None:
    for sql in (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5)"
        " SELECT sum(n) FROM r",
        "SELECT g, sum(g) OVER (ORDER BY g) FROM generate_series(1, 4) AS g",
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY g) FROM generate_series(1, 4) g",
        "SELECT count(*) FILTER (WHERE g > 2), count(DISTINCT g % 2) FROM generate_series(1, 5) g",
        "SELECT DISTINCT ON (g % 2) g FROM generate_series(1, 5) g ORDER BY g % 2, g DESC",
        "SELECT date_trunc('month', DATE '2024-03-15'), now() - interval '7 days' < now()",
        "SELECT '{\"a\": 1}'::jsonb ->> 'a', 'x%y' LIKE 'x%', CAST('1.5' AS numeric(4, 2))",
        "(SELECT 1 AS n) UNION (SELECT 2) ORDER BY 1 DESC",
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'id' LIMIT 3",
    ):
        got = await run_query(reader, validate_sql(sql))
        assert got.rows, sql


async def test_database_unchanged_after_everything(admin: str, seeded: dict[str, str]) -> None:
    """Runs last in this module: no test above changed a row or left a large object behind."""
    assert await checksum(admin) == seeded
