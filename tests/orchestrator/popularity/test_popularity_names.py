"""Prefix popularity's one name, and its release-0.1 names still accepted for one release: the
settings (`prefix_trace`, `trace_retention_hours`, `trace_opt_out_tenants`, as keywords and as
`PREFILL_*` variables, each with a deprecation line), the table `prefill_prefix_trace` (renamed
at start, its rows kept) and `python -m orchestrator.prefix_index`."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from orchestrator.core.popularity.index import Scope, block_chain
from orchestrator.core.popularity.popularity import PopularityRow
from orchestrator.db.server import Database
from orchestrator.popularity.store import OLD_TABLE, TABLE, PostgresPopularityStore
from orchestrator.settings import Settings

OLD_VARIABLES = (
    "PREFILL_PREFIX_TRACE",
    "PREFILL_TRACE_RETENTION_HOURS",
    "PREFILL_TRACE_OPT_OUT_TENANTS",
)
NEW_VARIABLES = (
    "PREFILL_POPULARITY_ENABLED",
    "PREFILL_POPULARITY_RETENTION_HOURS",
    "PREFILL_POPULARITY_OPT_OUT_TENANTS",
)


@pytest.fixture(autouse=True)
def no_popularity_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OLD_VARIABLES + NEW_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def deprecations(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]


def test_the_new_names_are_read_and_log_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PREFILL_POPULARITY_ENABLED", "false")
    monkeypatch.setenv("PREFILL_POPULARITY_RETENTION_HOURS", "2")
    with caplog.at_level(logging.WARNING):
        settings = Settings(popularity_opt_out_tenants=["t"])
    assert not settings.popularity_enabled
    assert settings.popularity_retention_hours == 2.0
    assert settings.popularity_opt_out_tenants == ["t"]
    assert deprecations(caplog) == []


def test_the_old_variables_are_read_with_a_deprecation_line_each(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PREFILL_PREFIX_TRACE", "false")
    monkeypatch.setenv("PREFILL_TRACE_RETENTION_HOURS", "3")
    monkeypatch.setenv("PREFILL_TRACE_OPT_OUT_TENANTS", '["tenant-a"]')
    with caplog.at_level(logging.WARNING):
        settings = Settings()
    assert not settings.popularity_enabled
    assert settings.popularity_retention_hours == 3.0
    assert settings.popularity_opt_out_tenants == ["tenant-a"]
    assert deprecations(caplog) == [
        "setting PREFILL_PREFIX_TRACE is deprecated: it is now PREFILL_POPULARITY_ENABLED",
        "setting PREFILL_TRACE_RETENTION_HOURS is deprecated: it is now "
        "PREFILL_POPULARITY_RETENTION_HOURS",
        "setting PREFILL_TRACE_OPT_OUT_TENANTS is deprecated: it is now "
        "PREFILL_POPULARITY_OPT_OUT_TENANTS",
    ]


def test_the_old_keywords_are_taken_with_a_deprecation_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        settings = Settings(prefix_trace=False, trace_retention_hours=4)
    assert not settings.popularity_enabled
    assert settings.popularity_retention_hours == 4.0
    assert deprecations(caplog) == [
        "setting prefix_trace is deprecated: it is now popularity_enabled",
        "setting trace_retention_hours is deprecated: it is now popularity_retention_hours",
    ]


def test_a_new_name_wins_over_an_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFILL_TRACE_RETENTION_HOURS", "3")
    monkeypatch.setenv("PREFILL_POPULARITY_RETENTION_HOURS", "5")
    assert Settings().popularity_retention_hours == 5.0
    both = Settings(popularity_enabled=True, prefix_trace=False)
    assert both.popularity_enabled


def test_a_keyword_wins_over_a_variable_under_either_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFILL_POPULARITY_ENABLED", "false")
    assert Settings(prefix_trace=True).popularity_enabled
    monkeypatch.setenv("PREFILL_PREFIX_TRACE", "false")
    assert Settings(popularity_enabled=True).popularity_enabled


def test_an_unprefixed_old_name_in_the_environment_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFIX_TRACE", "false")
    assert Settings().popularity_enabled


def test_the_former_module_still_runs_the_command_line() -> None:
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.prefix_index", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "{show,warm}" in done.stdout
    assert "now `python -m orchestrator.popularity`" in done.stderr


# --- the table ------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    database = Database(None, tmp_path_factory.mktemp("popularity-names-db"))
    await database.start()
    yield database
    await database.stop()


@pytest_asyncio.fixture
async def store(db: Database) -> PostgresPopularityStore:
    """A store on a database with neither table yet."""
    store = PostgresPopularityStore(db)
    await store.execute(f"DROP TABLE IF EXISTS {TABLE}, {OLD_TABLE}")
    return store


@pytest.mark.postgres
async def test_a_table_under_the_old_name_is_renamed_at_start_and_keeps_its_rows(
    db: Database, store: PostgresPopularityStore
) -> None:
    await store.start()  # the table as 0.2 makes it, then put back under 0.1's name
    tokens = tuple(range(100, 132))
    scope = Scope("tenant-a")
    row = PopularityRow(
        scope, "final", 16, tuple(block_chain(scope, tokens, 16)), tokens, time.time(), "demo"
    )
    await store.append([row])
    await store.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD_TABLE}")
    await store.execute(f"ALTER INDEX {TABLE}_at RENAME TO {OLD_TABLE}_at")
    assert await store.fetch(f"SELECT to_regclass('{TABLE}') IS NULL", []) == [(True,)]

    upgraded = PostgresPopularityStore(db)
    await upgraded.start()
    (kept,) = await upgraded.load(0)
    assert (kept.scope, kept.chain, kept.tokens, kept.label) == (scope, row.chain, tokens, "demo")
    gone = f"SELECT to_regclass('{OLD_TABLE}') IS NULL, to_regclass('{OLD_TABLE}_at') IS NULL"
    assert await upgraded.fetch(gone, []) == [(True, True)]
    await upgraded.append([row])  # its id sequence goes on
    assert len(await upgraded.load(0)) == 2


@pytest.mark.postgres
async def test_an_old_table_beside_a_new_one_is_left_alone(
    store: PostgresPopularityStore,
) -> None:
    await store.start()
    await store.execute(f"CREATE TABLE {OLD_TABLE} (id bigserial PRIMARY KEY)")
    await store.start()  # a restart: nothing to rename
    assert await store.load(0) == []
    both = f"SELECT to_regclass('{OLD_TABLE}') IS NOT NULL, to_regclass('{TABLE}') IS NOT NULL"
    assert await store.fetch(both, []) == [(True, True)]
