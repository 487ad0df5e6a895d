"""Run a checked query as the dataset's SELECT-only reader: in a READ ONLY transaction with
timeouts, always rolled back, at most `max_rows` rows back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from orchestrator.errors import DatabaseError
from orchestrator.text_to_sql.guard import SqlRefused
from orchestrator.text_to_sql.values import json_safe

CONNECT_TIMEOUT_S = 5
LOCK_MS = 1000  # lock_timeout, at most
GRACE_S = 5.0  # the client gives up this long after the server's statement_timeout
_TIMEOUTS = "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)"


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]  # JSON-safe values (see `json_safe`)
    truncated: bool  # more than `max_rows` rows existed
    ms: float


async def run_query(
    reader_url: str, sql: str, *, timeout_ms: int = 3000, max_rows: int = 100
) -> QueryResult:
    """Run `sql` as the reader in a READ ONLY transaction, rolled back; at most `max_rows` rows."""
    timeout_ms = max(1, timeout_ms)  # 0 would mean no statement_timeout at all
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S + 1):
            conn = await psycopg.AsyncConnection.connect(
                reader_url, connect_timeout=CONNECT_TIMEOUT_S
            )
    except (psycopg.Error, OSError, TimeoutError) as exc:
        raise DatabaseError(f"the database is unreachable: {_reason(exc)}") from exc
    try:
        async with asyncio.timeout(timeout_ms / 1000 + GRACE_S):  # should the server not stop it
            try:
                await conn.set_read_only(True)  # every transaction opens with BEGIN READ ONLY
                await conn.execute(_TIMEOUTS, (f"{timeout_ms}ms", f"{min(timeout_ms, LOCK_MS)}ms"))
                started = time.perf_counter()
                # A server-side cursor: DECLARE takes one query only; max_rows+1 rows come back.
                async with conn.cursor(name="prefill_ahead_query") as cursor:
                    await cursor.execute(sql.encode())
                    rows = await cursor.fetchmany(max_rows + 1)
                    columns = [column.name for column in cursor.description or ()]
                ms = (time.perf_counter() - started) * 1000
            finally:
                with contextlib.suppress(psycopg.Error):
                    await conn.rollback()
    except TimeoutError:
        raise DatabaseError(f"the database did not answer within {timeout_ms} ms") from None
    except pg_errors.QueryCanceled:
        raise SqlRefused(f"the query ran longer than {timeout_ms} ms") from None
    except psycopg.Error as exc:
        if conn.broken:
            raise DatabaseError(f"the database connection failed: {_reason(exc)}") from exc
        raise SqlRefused(f"the database rejected the query: {_reason(exc)}") from None
    finally:
        await conn.close()
    safe = [[json_safe(v) for v in row] for row in rows[:max_rows]]
    return QueryResult(columns, safe, truncated=len(rows) > max_rows, ms=round(ms, 3))


def _reason(exc: BaseException) -> str:
    """One line saying why (libpq's 'connection to ... failed: why' shortened to the why)."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    return "timed out" if isinstance(exc, TimeoutError) else lines[0].rsplit("failed: ", 1)[-1]
