"""`python -m eval gpu`: the plan of runs (workloads, modes, long-input sizes, typists; full and
quick), its time, its options, and the long input sized to a token target; no engine needed."""

from __future__ import annotations

import asyncio
import shlex

import httpx
import pytest

from eval.harness.modes import MODES, EvalError
from eval.scenarios import gpu
from eval.workloads.context_length import fit_to_tokens, stretched, with_context_tokens
from eval.workloads.workload import DATASETS, load_workload
from orchestrator.errors import SetupError
from vllm_launch.gpu_plan import GpuPlan, render

EVERY_MODE = ("cold", "static", "keystroke", "oracle", "speculate")


async def words(text: str) -> int:
    """A stand-in tokenizer: one token a word."""
    return len(text.split())


def by_name(form: gpu.Form) -> dict[str, gpu.GpuRun]:
    return {run.name: run for run in gpu.gpu_runs(form)}


def test_the_full_run_is_the_issues_plan() -> None:
    runs = gpu.gpu_runs(gpu.FULL)
    assert [run.name for run in runs] == [
        "paste-then-ask",
        "long-input-8k",
        "long-input-32k",
        "text-to-sql",
        "load-n1",
        "load-n8",
        "load-n32",
    ]
    assert gpu.FULL.model == "7b"
    plans = {run.name: run.plan() for run in runs}
    for name in ("paste-then-ask", "long-input-8k", "long-input-32k", "text-to-sql"):
        assert plans[name].modes == EVERY_MODE
        assert plans[name].concurrency == 1
    kinds = {name: plan.workload.kind for name, plan in plans.items()}
    assert kinds["paste-then-ask"] == "paste-then-ask"
    assert kinds["long-input-8k"] == kinds["long-input-32k"] == "long-input"
    assert set(kinds[n] for n in ("text-to-sql", "load-n1", "load-n8", "load-n32")) == {
        "text-to-sql"
    }
    sizes = {run.name: run.context_tokens for run in runs if run.context_tokens}
    assert sizes == {"long-input-8k": 8192, "long-input-32k": 32768}


def test_every_load_run_has_a_case_for_each_typist_at_once() -> None:
    for form in (gpu.FULL, gpu.QUICK):
        loads = [run for run in gpu.gpu_runs(form) if run.name.startswith("load-")]
        assert [run.plan().concurrency for run in loads] == list(form.typists)
        for run in loads:
            plan = run.plan()
            assert len(plan.workload.cases) >= plan.concurrency
            assert plan.modes == ("cold", "static", "keystroke")
            assert plan.stagger_s == form.stagger_s


def test_the_quick_form_is_small() -> None:
    quick = by_name(gpu.QUICK)
    assert gpu.QUICK.model == "tiny"
    assert list(quick) == [
        "paste-then-ask",
        "long-input-1k",
        "text-to-sql",
        "load-n1",
        "load-n2",
    ]
    assert quick["long-input-1k"].context_tokens == 1024
    for run in quick.values():
        plan = run.plan()
        assert plan.repeats == 1
        assert len(plan.workload.cases) == max(1, plan.concurrency)
    assert set(quick["paste-then-ask"].plan().modes) == set(MODES)


def test_the_full_form_fits_a_short_lease_and_quick_a_few_minutes() -> None:
    full = sum(gpu.estimate_s(run.plan()) for run in gpu.gpu_runs(gpu.FULL))
    quick = sum(gpu.estimate_s(run.plan()) for run in gpu.gpu_runs(gpu.QUICK))
    assert full <= 9 * 60  # the engine's start (a minute or two) on top: about 10 minutes
    assert quick <= 2 * 60
    slower = gpu.Form(**{**vars(gpu.FULL), "speedup": 1.0})
    assert sum(gpu.estimate_s(run.plan()) for run in gpu.gpu_runs(slower)) > 4 * full


def test_options_choose_the_form_the_model_and_the_repeats() -> None:
    options = gpu.parser()
    full = gpu.form_of(options.parse_args([]), options)
    assert (full.model, full.repeats) == ("7b", gpu.FULL.repeats)
    quick = gpu.form_of(options.parse_args(["--quick"]), options)
    assert quick.model == "tiny"
    chosen = gpu.form_of(
        options.parse_args(["--quick", "--model", "1.5b", "--repeats", "3"]), options
    )
    assert (chosen.model, chosen.repeats, chosen.typists) == ("1.5b", 3, gpu.QUICK.typists)
    with pytest.raises(SystemExit):
        gpu.form_of(options.parse_args(["--repeats", "0"]), options)
    with pytest.raises(SystemExit):
        options.parse_args(["--model", "70b"])


def test_the_gpu_plans_eval_step_is_this_command() -> None:
    last = render(GpuPlan(model="32b")).rstrip().splitlines()[-1]
    words = shlex.split(last)
    argv = words[words.index("gpu") + 1 :]
    args = gpu.parser().parse_args(argv)
    assert (args.model, str(args.out), args.quick) == ("32b", "docs/results/gpu-32b", False)


def test_a_context_is_cut_or_repeated_to_its_token_target() -> None:
    text = " ".join(f"word{i}" for i in range(1000)) + "\n"
    for target in (100, 1000, 4000):
        fitted, got = asyncio.run(fit_to_tokens(text, target, words))
        assert abs(got - target) <= 0.02 * target
        assert got == len(fitted.split())
    shorter = stretched(text, 50)
    assert text.startswith(shorter.rstrip())
    assert shorter.rstrip().split()[-1].startswith("word")
    longer = stretched(text, 3 * len(text))
    assert longer.count("word0 ") == 3


def test_only_a_long_input_context_is_sized() -> None:
    long = load_workload(DATASETS / "library-context", 1, "long-input")
    sized, got = asyncio.run(with_context_tokens(long, 500, words))
    assert abs(got - 500) <= 10
    assert sized.cases == long.cases
    assert sized.system != long.system
    sql = load_workload(DATASETS / "demo", 1, "text-to-sql")
    with pytest.raises(SetupError, match="only a long-input"):
        asyncio.run(with_context_tokens(sql, 500, words))
    with pytest.raises(SetupError, match="positive"):
        asyncio.run(fit_to_tokens("some text", 0, words))


def test_a_running_vllm_with_another_model_is_refused() -> None:
    def models(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "SmolLM2-135M-Instruct"}]})

    async def check(name: str) -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(models)) as http:
            await gpu.check_served(http, "http://vllm", name)

    with pytest.raises(EvalError, match="serves SmolLM2-135M-Instruct, not synthetic-tiny"):
        asyncio.run(check("tiny"))
