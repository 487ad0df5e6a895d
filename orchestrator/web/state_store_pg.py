"""Named prefix states in PostgreSQL: they outlive the orchestrator's process.

One table in the administrator's database, created on start. Tokens are an integer array; a
state's own input (its text or messages) is kept as JSON only where the tenant asked so.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from orchestrator.core.states.state import State
from orchestrator.db.server import Database
from orchestrator.errors import DatabaseError, SetupError

COLUMNS = "id, tenant, salt, tokens, created_at, expires_at, parent, roles, source, cached_tokens"
CREATE = """
CREATE TABLE IF NOT EXISTS prefill_states (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    salt text NOT NULL,
    tokens integer[] NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    parent text,
    roles text[],
    source jsonb,
    cached_tokens integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS prefill_states_tenant ON prefill_states (tenant, expires_at);
"""
UPSERT = f"""
INSERT INTO prefill_states ({COLUMNS}) VALUES (%s, %s, %s, %s::integer[], %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at
"""


def state_of(row: tuple[Any, ...]) -> State:
    state_id, tenant, salt, tokens, created, expires, parent, roles, source, cached = row
    return State(
        id=state_id,
        tenant=tenant,
        salt=salt,
        tokens=tuple(tokens),
        created_at=float(created),
        expires_at=float(expires),
        parent=parent,
        roles=tuple(roles) if roles is not None else None,
        source=source,
        cached_tokens=int(cached),
    )


class PostgresStates:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            async with await self.database.connect(self.database.admin(), autocommit=True) as conn:
                cursor = await conn.execute(sql, params)
                return await cursor.fetchall() if cursor.description else []
        except SetupError as error:
            raise DatabaseError(str(error)) from error
        except psycopg.Error as error:
            raise DatabaseError(f"the states table: {error}") from error

    async def start(self) -> None:
        for statement in CREATE.strip().split(";\n"):
            await self._run(statement)

    async def put(self, state: State) -> None:
        source = Jsonb(state.source) if state.source is not None else None
        roles = list(state.roles) if state.roles is not None else None
        await self._run(
            UPSERT,
            (
                state.id,
                state.tenant,
                state.salt,
                list(state.tokens),
                state.created_at,
                state.expires_at,
                state.parent,
                roles,
                source,
                state.cached_tokens,
            ),
        )

    async def get(self, tenant: str, state_id: str, now: float) -> State | None:
        rows = await self._run(
            f"SELECT {COLUMNS} FROM prefill_states WHERE tenant = %s AND id = %s "
            "AND expires_at > %s",
            (tenant, state_id, now),
        )
        return state_of(rows[0]) if rows else None

    async def of_tenant(self, tenant: str, now: float) -> list[State]:
        rows = await self._run(
            f"SELECT {COLUMNS} FROM prefill_states WHERE tenant = %s "
            "AND expires_at > %s ORDER BY created_at",
            (tenant, now),
        )
        return [state_of(row) for row in rows]

    async def delete(self, tenant: str, state_id: str) -> bool:
        rows = await self._run(
            "DELETE FROM prefill_states WHERE tenant = %s AND id = %s RETURNING id",
            (tenant, state_id),
        )
        return bool(rows)

    async def live(self, now: float) -> list[State]:
        rows = await self._run(
            f"SELECT {COLUMNS} FROM prefill_states WHERE expires_at > %s ORDER BY created_at",
            (now,),
        )
        return [state_of(row) for row in rows]

    async def purge(self, now: float) -> int:
        rows = await self._run(
            "DELETE FROM prefill_states WHERE expires_at <= %s RETURNING id", (now,)
        )
        return len(rows)
