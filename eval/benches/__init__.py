"""Benchmarks: keystroke load and hostile input against the fake vLLM in processes of their own
(`keystrokes.py`, `keystroke_load.py`, `typing_sessions.py`, `processes.py`, `hostile.py`,
`hostile_frames.py`), the passthrough overhead (`passthrough.py`) and answer before Enter
(`speculate.py`). The only room that may use the test kit's fake vLLM."""
