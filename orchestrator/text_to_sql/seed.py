"""A dataset's database: created, loaded in one transaction, and readable by its reader only.

A dataset is a folder of `schema.sql` (DDL), `seed.sql` (plain SQL: no COPY FROM stdin, no
BEGIN/COMMIT) and `questions.jsonl`. It gets a database of its own name, marked (in the
database's comment) with a checksum of the two SQL files, and a login role `<name>_reader` that
may only CONNECT and SELECT. An unchanged dataset is not loaded again.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from orchestrator.db.roles import reader_password, reader_role
from orchestrator.db.server import Connection, Database
from orchestrator.db.urls import mask_url, reason
from orchestrator.errors import SetupError

OURS = "prefill-ahead seed "  # how the comment on every database we create begins
DEFAULT_DATASET_ROOT = Path(__file__).resolve().parent.parent.parent / "datasets"
_COMMENT_OF = (
    "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = %s"
)
_ROLE_EXISTS = "SELECT 1 FROM pg_roles WHERE rolname = %s"
_ROLE = (
    "{0} ROLE {1} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {2};"
    " ALTER ROLE {1} SET default_transaction_read_only = on"
)
_GRANT_DB = "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO {who}"
_GRANT_SCHEMA = (
    "REVOKE CREATE ON SCHEMA {s} FROM PUBLIC; GRANT USAGE ON SCHEMA {s} TO {who};"
    " GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {who}"
)
_USER_SCHEMAS = "SELECT nspname FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema$)'"


@dataclass(frozen=True, repr=False)
class DatasetDatabase:
    """Where a dataset lives; `loaded` says whether this call (re)loaded it."""

    name: str
    admin_url: str
    reader_url: str
    loaded: bool

    def __repr__(self) -> str:
        return f"DatasetDatabase(name={self.name!r}, reader_url={mask_url(self.reader_url)!r})"


def list_datasets(root: Path) -> dict[str, Path]:
    """The dataset folders (those holding a `schema.sql`) under `root`, by name."""
    folders = sorted(root.iterdir()) if root.is_dir() else []
    return {p.name: p for p in folders if (p / "schema.sql").is_file()}


async def ensure_dataset(
    db: Database, name: str, folder: Path, *, reseed: bool = False
) -> DatasetDatabase:
    """Create the dataset's database and reader; (re)load it when new, changed or `reseed`."""
    role = reader_role(name)
    schema, seed = await asyncio.to_thread(_read_dataset, name, folder)
    marker = OURS + "sha256=" + hashlib.sha256(f"{schema}\0{seed}".encode()).hexdigest()
    password = await asyncio.to_thread(reader_password, db.data_dir, role, create=True)
    try:
        async with await db.connect(db.admin(), autocommit=True) as admin:
            loaded = await _create(admin, name, role, password, marker, reseed=reseed)
            async with await db.connect({**db.admin(), "dbname": name}) as conn:
                if loaded:
                    async with conn.transaction():
                        await _run_file(conn, name, "schema.sql", schema)
                        await _run_file(conn, name, "seed.sql", seed)
                        await conn.execute(_comment(sql.Identifier(name), marker))
                await _grant_reader(conn, sql.Identifier(name), sql.Identifier(role))
    except psycopg.Error as exc:
        raise SetupError(f"dataset {name}: {reason(exc)}") from exc
    urls = db.dataset_url(name, reader=False), db.dataset_url(name, reader=True)
    return DatasetDatabase(name, *urls, loaded=loaded)


async def _create(
    admin: Connection, name: str, role: str, password: str, marker: str, *, reseed: bool
) -> bool:
    """The database (empty again when it must be loaded) and its reader; whether to load it."""
    db, who = sql.Identifier(name), sql.Identifier(role)
    # Held until the connection closes: concurrent seeders of `name` take turns.
    await _one(admin, "SELECT pg_advisory_lock(hashtextextended(%s, 0))", "pa:" + name)
    comment = await _one(admin, _COMMENT_OF, name)
    if comment is not None and not comment.startswith(OURS):
        raise SetupError(f"database {name} exists but prefill-ahead did not create it")
    if loaded := reseed or comment != marker:
        await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db))
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(db))
        await admin.execute(_comment(db, OURS + "pending"))
    verb = "ALTER" if await _one(admin, _ROLE_EXISTS, role) else "CREATE"
    await admin.execute(sql.SQL(_ROLE).format(sql.SQL(verb), who, sql.Literal(password)))
    return loaded


def _comment(db: sql.Identifier, text: str) -> sql.Composed:
    return sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(text))


async def _one(conn: Connection, query: str, *args: str) -> Any:
    row = await (await conn.execute(query, args)).fetchone()
    return None if row is None else row[0]


async def _run_file(conn: Connection, name: str, file: str, text: str) -> None:
    try:
        await conn.execute(text.encode())
    except psycopg.Error as exc:
        position = exc.diag.statement_position or ""
        line = f" (line {text.count(chr(10), 0, int(position)) + 1})" if position.isdigit() else ""
        raise SetupError(f"dataset {name}: {file}{line}: {reason(exc)}") from exc


async def _grant_reader(conn: Connection, db: sql.Identifier, who: sql.Identifier) -> None:
    """Let the reader CONNECT, and SELECT in every user schema: nothing else."""
    statements = [sql.SQL(_GRANT_DB).format(db=db, who=who)]
    for (schema,) in await (await conn.execute(_USER_SCHEMAS)).fetchall():
        statements.append(sql.SQL(_GRANT_SCHEMA).format(s=sql.Identifier(schema), who=who))
    async with conn.transaction():
        await conn.execute(sql.SQL("; ").join(statements))


def _read_dataset(name: str, folder: Path) -> tuple[str, str]:
    try:
        schema, seed = (
            (folder / f).read_text(encoding="utf-8") for f in ("schema.sql", "seed.sql")
        )
        return schema, seed
    except OSError as exc:
        raise SetupError(f"dataset {name}: cannot read {exc.filename}: {exc.strerror}") from exc
