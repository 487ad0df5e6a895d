"""The eval behind `make eval`: TTFT of warmed requests against cold ones and the floor.

Rooms, each importing only the ones below it (top to bottom): `scenarios/` and `benches/` (the
commands), `harness/` (a run: plan, rounds, modes, the running stack), `engine/` (what vLLM
itself says), `workloads/` (datasets, replays, scoring) and `reports/` (results, statistics,
figures, markdown). `cli.py` is the one command line (`python -m eval`, `prefill-ahead-eval`).
"""
