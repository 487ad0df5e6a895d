"""Text-to-SQL: prompt, extraction, the guard, values made JSON-safe; run_query without a server
(`test_sql_runner.py` runs it on a real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import socket
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.core.frames import Error
from orchestrator.errors import DatabaseError, InvalidRequest
from orchestrator.text_to_sql.extract import extract_sql, statement_complete
from orchestrator.text_to_sql.guard import SqlRefused, validate_sql
from orchestrator.text_to_sql.lexing import statement_end
from orchestrator.text_to_sql.prompt import schema_prompt
from orchestrator.text_to_sql.runner import run_query
from orchestrator.text_to_sql.seed import DEFAULT_DATASET_ROOT
from orchestrator.text_to_sql.values import json_safe

# ---------------------------------------------------------------------------- schema_prompt

SCHEMA = """\
--
-- PostgreSQL database dump
--
-- Dumped by pg_dump version 16
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

/* ****************************** */
-- Name: items; Type: TABLE; Schema: shop; Owner: postgres
-- Prices are in euros.
CREATE TABLE shop.items (
    id integer PRIMARY KEY,   -- stable id

    -- a comment on a line of its own
    name text NOT NULL,
    note text DEFAULT 'a; b -- not a comment'
);
COMMENT ON TABLE shop.items IS 'Things; we sell them.';
COMMENT ON COLUMN shop.items.name IS 'Shown to customers.';
ALTER TABLE shop.items OWNER TO postgres;
CREATE INDEX items_name_idx ON shop.items (name);
CREATE VIEW shop.cheap AS SELECT * FROM shop.items; -- items under 10 euros
CREATE FUNCTION shop.f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
GRANT SELECT ON shop.items TO reader;
"""


def test_schema_prompt_keeps_the_ddl_and_drops_noise() -> None:
    prompt = schema_prompt(SCHEMA, "shop")
    head, _, ddl = prompt.partition("\n\n")
    assert head == (
        "You translate questions about the shop database into one PostgreSQL query. "
        "Answer with a single SQL query in a ```sql block, no explanation."
    )
    assert ddl.startswith(
        "-- Prices are in euros.\nCREATE TABLE shop.items (\n    id integer PRIMARY KEY,   -- "
        "stable id\n    -- a comment on a line of its own\n    name text NOT NULL,\n"
    )
    for kept in (
        "note text DEFAULT 'a; b -- not a comment'\n);",
        "COMMENT ON TABLE shop.items IS 'Things; we sell them.';",
        "COMMENT ON COLUMN shop.items.name IS 'Shown to customers.';",
        "CREATE VIEW shop.cheap AS SELECT * FROM shop.items; -- items under 10 euros",
        "$body$ SELECT 1; $body$ LANGUAGE sql;",
    ):
        assert kept in ddl
    for dropped in ("dump", "SET ", "set_config", "***", "Type:", "OWNER", "INDEX", "GRANT"):
        assert dropped not in ddl
    assert "\n\n\n" not in prompt
    assert not prompt.endswith("\n")


def test_schema_prompt_is_deterministic_with_sorted_capped_samples() -> None:
    samples: dict[str, list[tuple[Any, ...]]] = {
        "z_orders": [(1, Decimal("9.50"), dt.date(2024, 1, 2), None, True)],
        "a_items": [(i, f"it's #{i} */") for i in range(10)],
        "empty": [],
    }
    prompt = schema_prompt(SCHEMA, "shop", samples)
    assert prompt == schema_prompt(SCHEMA, "shop", dict(reversed(list(samples.items()))))
    assert prompt.startswith(schema_prompt(SCHEMA, "shop") + "\n\n/* Sample rows from a_items:")
    assert prompt.index("a_items") < prompt.index("z_orders")
    assert "(0, 'it''s #0 * /')" in prompt
    assert "(3, " not in prompt  # at most three rows per table
    assert "(1, 9.5, '2024-01-02', NULL, TRUE)" in prompt
    assert "empty" not in prompt


def test_schema_prompt_of_the_demo_dataset() -> None:
    schema = (DEFAULT_DATASET_ROOT / "demo" / "schema.sql").read_text()
    prompt = schema_prompt(schema, "demo")
    assert "CREATE TABLE" in prompt
    assert prompt == schema_prompt(schema, "demo")
    assert "\n\n\n" not in prompt
    assert all(line == line.rstrip() for line in prompt.splitlines())


# ------------------------------------------------------------------------------ extract_sql


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        ("```sql\nSELECT 1;\n```", "SELECT 1"),
        (
            "Here you go:\n\n```sql\nSELECT name\nFROM t;\n```\nIt lists names.",
            "SELECT name\nFROM t",
        ),
        ("```SQL\nSELECT 1\n```", "SELECT 1"),
        ("```postgresql\nselect 1\n```", "select 1"),
        ("```\nSELECT a FROM t\n```", "SELECT a FROM t"),
        ("```sql\nSELECT a\nFROM t\nWHERE b > 1", "SELECT a\nFROM t\nWHERE b > 1"),  # unterminated
        ("```sql SELECT 3```", "SELECT 3"),
        ("```sql\nSQL: SELECT 4;;\n```", "SELECT 4"),
        ("```sql\nDELETE FROM t\n```", "DELETE FROM t"),  # for validate_sql to refuse
        ("```python\nprint('SELECT 1')\n```\n```sql\nSELECT 2\n```", "SELECT 2"),
        ("```sql\n```\nSELECT 5", "SELECT 5"),
        ("<think>Maybe SELECT 1?</think>\n```sql\nSELECT 6\n```", "SELECT 6"),
        ("SQL: SELECT name FROM t; This returns names.", "SELECT name FROM t"),
        ("sql: select name from t", "select name from t"),
        (
            "I will select the rows.\nSELECT * FROM t\n\nThis query returns all rows.",
            "SELECT * FROM t",
        ),
        ("The query:\nSELECT a,\n  b\nFROM t\nNote: it works", "SELECT a,\n  b\nFROM t"),
        (
            "With a CTE:\nWITH x AS (SELECT 1) SELECT * FROM x;",
            "WITH x AS (SELECT 1) SELECT * FROM x",
        ),
        ("select name from t where a = 'x;y'; -- done", "select name from t where a = 'x;y'"),
        ("Answer:\nSELECT 1\n**Explanation**: one row.", "SELECT 1"),
        ("SELECT count(*) FROM t<|im_end|>", "SELECT count(*) FROM t"),
        ("No idea, sorry.", None),
        ("You could select it from the menu.", None),
        ("Here it is: select count(*) from t", "select count(*) from t"),
        ("", None),
        ("```sql\n;\n```", None),
    ],
)
def test_extract_sql(text: str, sql: str | None) -> None:
    assert extract_sql(text) == sql


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("SELECT 1; SELECT 2;", len("SELECT 1;")),
        ("SELECT 'a;b' AS x, \"c;d\"; more", len("SELECT 'a;b' AS x, \"c;d\";")),
        (
            "SELECT 1 -- not here;\n, 2 /* nor; here */;",
            len("SELECT 1 -- not here;\n, 2 /* nor; here */;"),
        ),
        ("; ;\nSELECT 1;", len("; ;\nSELECT 1;")),  # empty statements are skipped
        ("SELECT $x$ a; b $x$;", len("SELECT $x$ a; b $x$;")),
        ("SELECT 1", None),
        ("SELECT 'open; string", None),
        ("SELECT 1 /* open; comment", None),
        ("SELECT $x$ open; dollar quote", None),
        ("-- only a comment;\n", None),
    ],
)
def test_statement_end(text: str, end: int | None) -> None:
    assert statement_end(text) == end


STATEMENT = "```sql\nSELECT name FROM t WHERE note = 'a;b';"


@pytest.mark.parametrize(
    ("answer", "complete"),
    [
        (STATEMENT + "\nSELECT", True),  # a second statement
        (STATEMENT + "\n\nThis query lists", True),  # prose after the query
        (STATEMENT + " -- names\nThis", True),  # past a comment
        (STATEMENT, False),  # nothing after it yet
        (STATEMENT + "\n", False),
        (STATEMENT + "\n`", False),  # the closing fence (the stop sequence) may be coming
        (STATEMENT + "\n```", False),
        (STATEMENT + " -", False),  # a comment may be coming
        (STATEMENT + " -- names", False),
        ("```sql\nSELECT name\nFROM t\n", False),  # no `;` yet
        ("```sql\nSELECT 1\n```\nThen; more", False),  # the block closed before any `;`
        ("I would run SELECT 1; then SELECT 2", False),  # no fenced block: prose
        ("```sql\n;\nSELECT 1; Done", True),
    ],
)
def test_statement_complete_ends_at_the_semicolon(answer: str, complete: bool) -> None:
    end = statement_complete(answer)
    assert (end is not None) == complete
    if end is not None:
        assert answer[:end].endswith(";")
        assert extract_sql(answer[:end]) == extract_sql(answer[:end] + "\n```")


# ----------------------------------------------------------------------------- validate_sql

VALID = [
    "SELECT 1",
    "select name from customers where city = 'London';",
    "SELECT c.name, count(*) AS n FROM customers c JOIN orders o ON o.customer_id = c.id "
    "GROUP BY c.name HAVING count(*) > 2 ORDER BY n DESC LIMIT 5",
    "SELECT a.x FROM a LEFT JOIN b USING (id) FULL OUTER JOIN c ON c.id = a.id",
    "WITH big AS (SELECT * FROM orders WHERE total > 100) SELECT count(*) FROM big",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
    "SELECT id FROM a UNION SELECT id FROM b",
    "SELECT id FROM a UNION ALL SELECT id FROM b INTERSECT SELECT id FROM c EXCEPT SELECT 1",
    "(SELECT id FROM a) UNION (SELECT id FROM b) ORDER BY 1",
    "SELECT name, rank() OVER (PARTITION BY city ORDER BY signed_up) FROM customers",
    "SELECT sum(x) OVER w FROM t WINDOW w AS (ORDER BY y ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)",
    "SELECT * FROM p WHERE id IN (SELECT product_id FROM o) AND NOT EXISTS (SELECT 1 FROM q)",
    "SELECT name, (SELECT max(price) FROM products) - price AS gap FROM products",
    "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.t_id = t.id LIMIT 1) AS last",
    "SELECT DISTINCT ON (city) city, name FROM customers ORDER BY city, name",
    "SELECT count(*) FILTER (WHERE status = 'shipped'), count(DISTINCT city) FROM t",
    "SELECT CASE WHEN price > 10 THEN 'high' ELSE 'low' END, price::numeric(10, 2) FROM p",
    "SELECT date_trunc('month', ordered_at), extract(year FROM now()) - 1 FROM orders",
    "SELECT * FROM orders WHERE ordered_at > now() - interval '7 days'",
    "SELECT name FROM t WHERE name ILIKE 'a%' OR name = 'O''Brien' OR name = 'x; DROP TABLE t'",
    "SELECT string_agg(name, ', ' ORDER BY name), coalesce(nullif(a, ''), 'none') FROM t",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY price) FROM products",
    "SELECT g FROM generate_series(1, 10) AS g OFFSET 2",
    "SELECT data ->> 'key', tags[1] FROM docs WHERE data @> '{\"a\": 1}'",
    "-- the answer\nSELECT 1 /* ; DELETE FROM t */",
    'SELECT "Mixed Case" FROM "Table"',
]


@pytest.mark.parametrize("sql", VALID)
def test_validate_accepts_selects(sql: str) -> None:
    normalized = validate_sql(sql)
    assert normalized
    assert not normalized.rstrip().endswith(";")
    assert validate_sql(normalized) == normalized  # idempotent


def test_validate_normalizes_to_postgres() -> None:
    assert validate_sql("select  a from t  ;") == "SELECT a FROM t"
    assert validate_sql("SELECT 1 -- hi\n") == "SELECT 1"
    assert validate_sql('SELECT "Name" FROM "T"') == 'SELECT "Name" FROM "T"'


HOSTILE = [
    ("SELECT 1; SELECT 2", "only one SELECT query is allowed; got 2 statements"),
    ("SELECT * FROM t WHERE a = 'x'; DROP TABLE t --", "got 2 statements"),
    ("SELECT 1; -- more\nDELETE FROM t; SELECT 3", "got 3 statements"),
    ("", "only one SELECT query is allowed; got none"),
    (" ;; ", "got none"),
    ("INSERT INTO t VALUES (1)", "INSERT is not allowed"),
    ("UPDATE t SET a = 1", "UPDATE is not allowed"),
    ("DELETE FROM t", "DELETE is not allowed"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "MERGE is not allowed"),
    ("TRUNCATE t", "TRUNCATE is not allowed"),
    ("DROP TABLE t", "DROP is not allowed"),
    ("CREATE TABLE x AS SELECT 1", "CREATE is not allowed"),
    ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", "CREATE is not allowed"),
    ("CREATE EXTENSION dblink", "CREATE is not allowed"),
    ("ALTER TABLE t ADD COLUMN c int", "ALTER is not allowed"),
    ("ALTER SYSTEM SET fsync = off", "ALTER is not allowed"),
    ("GRANT SELECT ON t TO public", "GRANT is not allowed"),
    ("REVOKE ALL ON t FROM public", "REVOKE is not allowed"),
    ("COMMENT ON TABLE t IS 'x'", "COMMENT is not allowed"),
    ("COPY t TO '/tmp/t.csv'", "COPY is not allowed"),
    ("COPY (SELECT 1) TO PROGRAM 'id'", "COPY is not allowed"),
    ("SELECT * INTO new_t FROM t", "SELECT ... INTO is not allowed"),
    ("WITH x AS (SELECT 1) SELECT * INTO TEMP y FROM x", "SELECT ... INTO is not allowed"),
    ("SELECT * FROM t FOR UPDATE", "FOR UPDATE is not allowed"),
    ("SELECT * FROM t FOR SHARE", "FOR SHARE is not allowed"),
    ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", "FOR NO KEY UPDATE is not allowed"),
    ("SELECT * FROM t FOR KEY SHARE", "FOR KEY SHARE is not allowed"),
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", "FOR UPDATE is not allowed"),
    ("SELECT pg_sleep(5)", "function pg_sleep is not allowed"),
    ("SELECT pg_catalog.pg_sleep(5)", "function pg_sleep is not allowed"),
    ('SELECT "pg_sleep"(5)', "function pg_sleep is not allowed"),
    ("SELECT * FROM t WHERE pg_sleep_for('5 s') IS NULL", "function pg_sleep_for is not allowed"),
    ("SELECT (SELECT pg_sleep_until(now()))", "function pg_sleep_until is not allowed"),
    ("SELECT set_config('statement_timeout', '0', false)", "function set_config is not allowed"),
    ("SELECT lo_import('/etc/passwd')", "function lo_import is not allowed"),
    ("SELECT lo_export(1, '/tmp/x')", "function lo_export is not allowed"),
    ("SELECT lo_unlink(1)", "function lo_unlink is not allowed"),
    ("SELECT pg_read_file('/etc/passwd')", "function pg_read_file is not allowed"),
    ("SELECT pg_read_binary_file('/etc/passwd')", "function pg_read_binary_file is not allowed"),
    ("SELECT * FROM pg_ls_dir('.')", "function pg_ls_dir is not allowed"),
    ("SELECT pg_stat_file('x')", "function pg_stat_file is not allowed"),
    ("SELECT * FROM dblink('host=x', 'DELETE FROM t') AS r(a int)", "function dblink is not"),
    ("SELECT dblink_exec('host=x', 'DROP TABLE t')", "function dblink_exec is not allowed"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "function pg_terminate_backend"),
    ("SELECT pg_cancel_backend(1)", "function pg_cancel_backend is not allowed"),
    ("SELECT pg_reload_conf()", "function pg_reload_conf is not allowed"),
    ("SELECT pg_rotate_logfile()", "function pg_rotate_logfile is not allowed"),
    ("SELECT pg_advisory_lock(1)", "function pg_advisory_lock is not allowed"),
    ("SELECT pg_advisory_xact_lock_shared(1)", "function pg_advisory_xact_lock_shared is not"),
    ("SELECT txid_current()", "function txid_current is not allowed"),
    ("SELECT nextval('s')", "function nextval is not allowed"),
    ("SELECT setval('s', 1)", "function setval is not allowed"),
    ("SELECT currval('s')", "function currval is not allowed"),
    ("SELECT query_to_xml('DELETE FROM t RETURNING *', true, true, '')", "function query_to_xml"),
    ("SELECT query_to_xml_and_xmlschema('x', true, true, '')", "function query_to_xml_and_xml"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE is not allowed"),
    ("WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM u", "UPDATE is not allowed"),
    ("WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i", "INSERT is not allowed"),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "INSERT is not allowed"),
    ("DO $$ BEGIN DELETE FROM t; END $$", "DO is not allowed"),
    ("CALL p()", "CALL is not allowed"),
    ("VACUUM", "VACUUM is not allowed"),
    ("VACUUM FULL t", "VACUUM is not allowed"),
    ("ANALYZE t", "ANALYZE is not allowed"),
    ("SET search_path = evil", "SET is not allowed"),
    ("SET ROLE postgres", "SET is not allowed"),
    ("SET SESSION AUTHORIZATION postgres", "SET is not allowed"),
    ("RESET ALL", "RESET is not allowed"),
    ("SHOW ALL", "SHOW is not allowed"),
    ("LISTEN ch", "LISTEN is not allowed"),
    ("NOTIFY ch, 'x'", "NOTIFY is not allowed"),
    ("UNLISTEN *", "UNLISTEN is not allowed"),
    ("PREPARE p AS DELETE FROM t", "PREPARE is not allowed"),
    ("EXECUTE p", "EXECUTE is not allowed"),
    ("DEALLOCATE p", "DEALLOCATE is not allowed"),
    ("EXPLAIN ANALYZE DELETE FROM t", "EXPLAIN is not allowed"),
    ("BEGIN", "BEGIN is not allowed"),
    ("START TRANSACTION READ WRITE", "START is not allowed"),
    ("COMMIT", "COMMIT is not allowed"),
    ("ROLLBACK", "ROLLBACK is not allowed"),
    ("LOCK TABLE t", "LOCK is not allowed"),
    ("DECLARE c CURSOR FOR SELECT 1", "DECLARE is not allowed"),
    ("REFRESH MATERIALIZED VIEW v", "REFRESH is not allowed"),
    ("CHECKPOINT", "CHECKPOINT is not allowed"),
    ("DISCARD ALL", "DISCARD is not allowed"),
    ("LOAD 'evil.so'", "LOAD is not allowed"),
    ("REINDEX TABLE t", "REINDEX is not allowed"),
    ("/* hidden */ DELETE FROM t", "DELETE is not allowed"),
    ("TABLE t", "TABLE is not allowed"),
    ("VALUES (1)", "VALUES is not allowed"),
    ("hello world", "not valid SQL: a query starts with SELECT or WITH"),
    ("SELECT FROM WHERE", "not valid SQL: syntax error near 'WHERE' (line 1, column 17)"),
    ("SELECT (1", "not valid SQL: syntax error"),
    ("SELECT 'unterminated", "not valid SQL: "),
]


@pytest.mark.parametrize(("sql", "reason"), HOSTILE, ids=[h[0][:40] for h in HOSTILE])
def test_validate_refuses(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused) as info:
        validate_sql(sql)
    error = info.value
    assert reason in error.message
    assert "\n" not in error.message
    assert isinstance(error, InvalidRequest)
    assert error.code == "sql_refused"
    frame = Error.of(error).dump()
    expected = {"type": "error", "code": "sql_refused", "message": error.message, "status": 400}
    assert frame == expected


def test_hostile_corpus_is_large() -> None:
    assert len(HOSTILE) >= 30


def test_json_safe() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5)
    value = json_safe([Decimal("1.50"), Decimal("NaN"), float("inf"), when, dt.time(1, 2)])
    assert value == [1.5, "NaN", "inf", "2024-01-02T03:04:05", "01:02:00"]
    value = json_safe((b"\xff", {"a": (1, Decimal("2"))}, True, None, "x", 7))
    assert value == ["\\xff", {"a": [1, 2.0]}, True, None, "x", 7]
    json.dumps(value, allow_nan=False)


# ---------------------------------------------------------- run_query without a server


async def test_run_query_unreachable_database() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DatabaseError, match=r"^the database is unreachable: ") as info:
        await run_query(f"postgresql://nobody:secret@127.0.0.1:{port}/demo", "SELECT 1")
    assert "secret" not in info.value.message
