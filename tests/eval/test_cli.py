"""The eval's command line fails in one line, never with a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from eval.__main__ import main
from orchestrator.errors import SetupError
from testkit.serving import StartupFailed, serve_in_thread


def test_a_folder_that_is_no_dataset_ends_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--dataset", str(tmp_path / "library-large")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no dataset folder at ")
    assert err.count("\n") == 1
    (tmp_path / "notes").mkdir()
    assert main(["--dataset", str(tmp_path / "notes")]) == 1
    assert "is not a dataset: a text-to-SQL one has schema.sql" in capsys.readouterr().err


def test_a_failed_start_up_is_one_line_with_its_reason() -> None:
    @contextlib.asynccontextmanager
    async def failing(app: FastAPI) -> AsyncIterator[None]:
        raise SetupError("dataset library_large: syntax error at or near 'CREAT'\nLINE 1: ...")
        yield

    with (
        pytest.raises(StartupFailed, match=r"did not start: dataset library_large: syntax") as e,
        serve_in_thread(FastAPI(lifespan=failing), timeout_s=20),
    ):
        pass
    assert "\n" not in str(e.value)
