"""Prefix popularity in the service's PostgreSQL: one table, created when the service starts.

    prefill_prefix_popularity(id, at, tenant, namespace, kind, label, block_size, chain, tokens)

`chain` is the prompt's block-hash chain (`bytea[]`, our own hashes, `core/popularity/index.py`),
`tokens` the token ids of those blocks (`int[]`): what a re-warm sends. No text, no salt.

Release 0.1 named the table `prefill_prefix_trace`: where it exists and the new one does not,
it is renamed (with its indexes and id sequence) before anything else, so an upgrade keeps its
rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from orchestrator.core.popularity.index import Scope
from orchestrator.core.popularity.popularity import PopularityRow
from orchestrator.db.server import Database
from orchestrator.db.urls import reason
from orchestrator.errors import DatabaseError, SetupError

TABLE = "prefill_prefix_popularity"
OLD_TABLE = "prefill_prefix_trace"  # its name in release 0.1
MIGRATE = f"""
DO $$
BEGIN
    IF to_regclass('{OLD_TABLE}') IS NOT NULL AND to_regclass('{TABLE}') IS NULL THEN
        ALTER TABLE {OLD_TABLE} RENAME TO {TABLE};
        ALTER INDEX IF EXISTS {OLD_TABLE}_at RENAME TO {TABLE}_at;
        ALTER INDEX IF EXISTS {OLD_TABLE}_tenant RENAME TO {TABLE}_tenant;
        ALTER SEQUENCE IF EXISTS {OLD_TABLE}_id_seq RENAME TO {TABLE}_id_seq;
    END IF;
END $$;
"""
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    tenant text NOT NULL,
    namespace text NOT NULL DEFAULT '',
    kind text NOT NULL CHECK (kind IN ('final', 'warm')),
    label text,
    block_size integer NOT NULL CHECK (block_size > 0),
    chain bytea[] NOT NULL,
    tokens integer[] NOT NULL
);
CREATE INDEX IF NOT EXISTS {TABLE}_at ON {TABLE} (at);
CREATE INDEX IF NOT EXISTS {TABLE}_tenant ON {TABLE} (tenant, at);
"""
COLUMNS = "at, tenant, namespace, kind, label, block_size, chain, tokens"


class PostgresPopularityStore:
    """A `PopularityStore` (`core/popularity/popularity.py`) in the service's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def start(self) -> None:
        await self.execute(MIGRATE)
        await self.execute(SCHEMA)

    async def append(self, rows: Sequence[PopularityRow]) -> None:
        values = [
            (
                row.at,
                row.scope.tenant,
                row.scope.namespace,
                row.kind,
                row.label,
                row.block_size,
                list(row.chain),
                list(row.tokens),
            )
            for row in rows
        ]
        sql = (
            f"INSERT INTO {TABLE} ({COLUMNS}) VALUES "
            "(to_timestamp(%s), %s, %s, %s, %s, %s, %s::bytea[], %s::integer[])"
        )
        async with await self.connect() as conn:
            try:
                async with conn.cursor() as cursor:
                    await cursor.executemany(sql, values)
            except psycopg.Error as exc:
                raise DatabaseError(f"popularity store: {reason(exc)}") from exc

    async def load(self, since: float, tenant: str | None = None) -> list[PopularityRow]:
        sql = (
            "SELECT extract(epoch FROM at)::float8, tenant, namespace, kind, label, block_size, "
            f"chain, tokens FROM {TABLE} WHERE at >= to_timestamp(%s)"
        )
        params: list[Any] = [since]
        if tenant is not None:
            sql += " AND tenant = %s"
            params.append(tenant)
        records = await self.fetch(sql + " ORDER BY at, id", params)
        return [
            PopularityRow(
                Scope(t, ns), kind, size, tuple(bytes(h) for h in chain), tuple(tokens), at, label
            )
            for at, t, ns, kind, label, size, chain, tokens in records
        ]

    async def prune(self, before: float) -> int:
        return await self.execute(f"DELETE FROM {TABLE} WHERE at < to_timestamp(%s)", [before])

    async def forget(self, tenants: Sequence[str]) -> int:
        return await self.execute(f"DELETE FROM {TABLE} WHERE tenant = ANY(%s)", [list(tenants)])

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await self.database.connect(self.database.admin(), autocommit=True)
        except SetupError as exc:
            raise DatabaseError(str(exc)) from exc

    async def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        async with await self.connect() as conn:
            try:
                cursor = await conn.execute(sql, params)
            except psycopg.Error as exc:
                raise DatabaseError(f"popularity store: {reason(exc)}") from exc
            return max(0, cursor.rowcount)

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with await self.connect() as conn:
            try:
                cursor = await conn.execute(sql, params)
                return await cursor.fetchall()
            except psycopg.Error as exc:
                raise DatabaseError(f"popularity store: {reason(exc)}") from exc
