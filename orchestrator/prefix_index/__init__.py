"""The prefix trace in PostgreSQL, and `python -m orchestrator.prefix_index show|warm`."""
