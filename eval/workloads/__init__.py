"""What the eval replays: dataset folders as workloads (`workload.py`), seeded replays of how a
person types (`replay.py`), execution accuracy of SQL answers (`scoring.py`) and the texts of the
keystroke benchmark (`keystroke_texts.py`)."""
