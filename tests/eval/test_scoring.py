"""The eval's execution accuracy (`eval/workloads/scoring.py`): does a predicted query give the
gold query's rows? On hand-made rows, and on real results from PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from eval.workloads.scoring import gold_orders, results_match
from orchestrator.text_to_sql.runner import QueryResult, run_query
from tests.orchestrator.text_to_sql.test_sql_runner import admin, db, reader, seeded

__all__ = ["admin", "db", "reader", "seeded"]  # the PostgreSQL fixtures of the last test

# ---------------------------------------------------------------------- results_match, orders


def result(rows: list[list[Any]], columns: list[str] | None = None) -> QueryResult:
    names = columns or [f"c{i}" for i in range(len(rows[0]) if rows else 0)]
    return QueryResult(names, rows, truncated=False, ms=1.0)


@pytest.mark.parametrize(
    ("gold", "predicted", "ordered", "match"),
    [
        ([(1,), (2,)], [(2,), (1,)], False, True),  # a bag: order ignored...
        ([(1,), (2,)], [(2,), (1,)], True, False),  # ...unless the gold query orders
        ([(1,), (2,)], [(1,), (2,)], True, True),
        ([(1,), (1,), (2,)], [(1,), (2,), (2,)], False, False),  # multiplicities count
        ([(1,), (1,)], [(1,)], False, False),
        ([], [], False, True),
        ([], [(1,)], False, False),
        ([(Decimal("1.50"),)], [(1.5,)], False, True),
        ([(Decimal("0.3333333333333333"),)], [(1 / 3,)], False, True),
        ([(1,)], [(1.0000001,)], False, True),
        ([(1,)], [(1.001,)], False, False),
        ([(3,)], [(Decimal(3),)], False, True),
        ([(None,)], [(None,)], False, True),
        ([(None,)], [(0,)], False, False),
        ([("1",)], [(1,)], False, False),  # text is not a number
        ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], False, True),  # columns permuted
        ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True, True),
        ([(1, "a"), (2, "b")], [("b", 1), ("a", 2)], False, False),  # not one permutation
        ([(1, 2, 3)], [(3, 1, 2)], False, True),
        ([(1, 2)], [(1, 2, 3)], False, False),  # column counts differ
        ([(1, 1, 2), (2, 1, 1)], [(1, 2, 1), (2, 1, 1)], False, True),
        ([tuple(range(7))], [tuple(range(7))], False, True),  # wide: positional only
        ([tuple(range(7))], [tuple(reversed(range(7)))], False, False),
        ([(dt.date(2024, 1, 2), b"\x01")], [("2024-01-02", "\\x01")], False, True),
    ],
)
def test_results_match(gold: Any, predicted: Any, ordered: bool, match: bool) -> None:
    assert results_match(gold, predicted, ordered=ordered) is match


def test_results_match_ignores_column_names_and_takes_query_results() -> None:
    gold = result([[1, "Ada"], [2, "Bob"]], ["id", "name"])
    predicted = result([["Bob", 2], ["Ada", 1]], ["who", "n"])
    assert results_match(gold, predicted, ordered=False)
    assert not results_match(gold, predicted, ordered=True)
    assert results_match(gold, [(1, "Ada"), (2, "Bob")], ordered=True)


@pytest.mark.parametrize(
    ("sql", "orders"),
    [
        ("SELECT a FROM t ORDER BY a", True),
        ("SELECT a FROM t ORDER BY a DESC LIMIT 3", True),
        ("SELECT 1 UNION SELECT 2 ORDER BY 1", True),
        ("(SELECT a FROM t ORDER BY a)", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x ORDER BY 1", True),
        ("SELECT a FROM t", False),
        ("SELECT * FROM (SELECT a FROM t ORDER BY a) s", False),
        ("SELECT a FROM t WHERE a IN (SELECT b FROM u ORDER BY b LIMIT 1)", False),
        ("WITH x AS (SELECT 1 ORDER BY 1) SELECT * FROM x", False),
        ("SELECT row_number() OVER (ORDER BY a) FROM t", False),
        ("SELECT string_agg(a, ',' ORDER BY a) FROM t", False),
        ("SELEC a FROM t ORDER BY a", True),  # unparsable: a plain text search
    ],
)
def test_gold_orders(sql: str, orders: bool) -> None:
    assert gold_orders(sql) is orders


@pytest.mark.postgres
async def test_execution_match_on_real_results(reader: str) -> None:
    gold_sql = "SELECT g, g * 2 AS twice FROM generate_series(1, 5) g ORDER BY g"
    gold = await run_query(reader, gold_sql)
    swapped = await run_query(reader, "SELECT g * 2.0 AS d, g FROM generate_series(1, 5) g")
    assert gold_orders(gold_sql)
    assert results_match(gold, swapped, ordered=False)
    backwards = await run_query(reader, "SELECT g, 2 * g FROM generate_series(5, 1, -1) g")
    assert not results_match(gold, backwards, ordered=gold_orders(gold_sql))
    assert results_match(gold, backwards, ordered=False)
