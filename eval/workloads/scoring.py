"""Execution accuracy for the eval: does a predicted query give the gold query's rows?

Spider test-suite semantics: the same bag of rows (the same list when the gold query orders
them), columns matched in any order.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlglot import exp

from orchestrator.text_to_sql.guard import SqlRefused, parse_sql
from orchestrator.text_to_sql.runner import QueryResult
from orchestrator.text_to_sql.values import json_safe

MAX_PERMUTED_COLUMNS = 6
Rows = Sequence[Sequence[Any]]


def gold_orders(sql: str) -> bool:
    """Whether the (gold) query's outermost level has an ORDER BY, so row order matters."""
    try:
        node: exp.Expr | None = parse_sql(sql)
    except SqlRefused:
        return re.search(r"\border\s+by\b", sql, re.I) is not None
    while node is not None:
        if node.args.get("order"):
            return True
        node = node.this if isinstance(node, exp.Subquery) else None
    return False


def results_match(
    gold: QueryResult | Rows, predicted: QueryResult | Rows, *, ordered: bool
) -> bool:
    """Execution match: same bag of rows (same list if `ordered`), columns in any order."""
    want, got = _canonical(gold), _canonical(predicted)
    if len(want) != len(got):
        return False
    if not want:
        return True
    width = len(want[0])
    if any(len(row) != width for row in [*want, *got]):
        return False
    if width > MAX_PERMUTED_COLUMNS:
        return _same(want, got, ordered)
    have = [Counter(row[i] for row in got) for i in range(width)]
    need = [Counter(row[i] for row in want) for i in range(width)]
    fits = [{j for j in range(width) if have[j] == need[i]} for i in range(width)]
    for order in itertools.permutations(range(width)):
        fitting = all(order[i] in fits[i] for i in range(width))
        if fitting and _same(want, [tuple(row[j] for j in order) for row in got], ordered):
            return True
    return False


def _canonical(result: QueryResult | Rows) -> list[tuple[Any, ...]]:
    rows = result.rows if isinstance(result, QueryResult) else result
    return [tuple(_comparable(json_safe(v)) for v in row) for row in rows]


def _comparable(value: Any) -> Any:  # of a json_safe value
    if isinstance(value, float):
        return round(value, 6) + 0.0  # + 0.0: -0.0 becomes 0.0
    if isinstance(value, list):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def _same(want: list[tuple[Any, ...]], got: list[tuple[Any, ...]], ordered: bool) -> bool:
    return want == got if ordered else Counter(want) == Counter(got)
