"""The eval's command line fails in one line, never with a traceback."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from eval.cli import COMMANDS, main
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


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_answers_help_under_its_own_name(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m eval {name} ")


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["evaluate"])
    assert done.value.code == 2
    assert "invalid choice: 'evaluate'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("module", "command"),
    [("eval.readme_tables", "readme-tables"), ("eval.finals_cost", "finals-cost")],
)
def test_the_former_module_forms_run_the_same_commands(module: str, command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m eval {command} ")
