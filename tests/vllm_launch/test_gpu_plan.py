"""`gpu-plan`: every launcher command it prints is one the launcher accepts, with the options
the GPU run needs."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from vllm_launch.__main__ import main, parse_args
from vllm_launch.gpu_plan import GpuPlan, render


def launcher_commands(text: str) -> dict[str, list[str]]:
    """The launcher's argv (after `-m vllm_launch`) of each command line, by subcommand (and
    of the serve command the plan shows in a comment)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            if "(vLLM alone, by hand: " not in line:
                continue
            line = line.split("by hand: ", 1)[1].removesuffix(")")
        words = shlex.split(line)
        if "vllm_launch" in words:
            argv = words[words.index("vllm_launch") + 1 :]
            found[next(w for w in argv if w in ("bundle", "install", "prepare-model", "serve"))] = (
                argv
            )
    return found


def test_the_plan_is_made_of_commands_the_launcher_accepts() -> None:
    commands = launcher_commands(render(GpuPlan()))
    assert set(commands) == {"bundle", "install", "prepare-model", "serve"}
    bundle = parse_args(commands["bundle"])
    assert (bundle.engine, bundle.vllm, bundle.python_version) == ("gpu", "vllm==0.26.0", "3.11")
    assert not bundle.target_has_torch
    install = parse_args(commands["install"])
    assert str(install.bundle) == "bundle-gpu"
    assert str(install.app_venv) == ".venv"
    serve = parse_args(commands["serve"])
    assert (serve.device, serve.synthetic) == ("gpu", "7b")
    assert serve.max_model_len >= 32768 + 1024  # a 32k-token prompt and its answer
    assert not serve.no_kv_events
    assert parse_args(commands["prepare-model"]).synthetic == "7b"


def test_options_reach_the_plan() -> None:
    text = render(GpuPlan(model="32b", target_has_torch=True, port=9001, max_model_len=36000))
    commands = launcher_commands(text)
    assert parse_args(commands["bundle"]).target_has_torch
    serve = parse_args(commands["serve"])
    assert (serve.synthetic, serve.port, serve.max_model_len) == ("32b", 9001, 36000)
    assert "PREFILL_VLLM_URL=http://127.0.0.1:9001" in text
    assert "PREFILL_EVAL_VLLM_ARGS='--max-model-len 36000' " in text
    assert text.rstrip().endswith("-m eval gpu --model 32b --out docs/results/gpu-32b")


def test_gpu_plan_prints_and_writes_a_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "gpu-run.sh"
    assert main(["gpu-plan", "--model", "1.5b", "--write", str(script)]) == 0
    printed = capsys.readouterr().out
    assert printed == script.read_text()
    assert script.stat().st_mode & 0o111
    assert "--synthetic 1.5b" in printed
