"""The eval commands on a real engine: named suites (`suite`, `load`), a small KV cache
(`eviction.py`), replicas behind a router (`replicas.py`), vLLM restarts (`restart.py`) and TTFT
from a named state (`states.py`)."""
