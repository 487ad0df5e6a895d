"""What the engine says: its version, flags and token counts (`facts.py`), its state before a
final (`state.py`), its KV events followed (`kv_watch.py`) and counted per salt (`kv_count.py`),
and the warm prefill a run cost, from its side (`warm.py`)."""
