"""One eval run: its plan and rounds (`runner.py`, `rounds.py`), the schedule every mode follows
(`schedule.py`), the modes driven through `/ws/session` (`modes.py`), and the running stack it
starts: vLLM, the database and the orchestrator (`stack.py`; `own_engine.py` for commands that
start an engine of their own)."""
