"""Prefix popularity in PostgreSQL (`store.py`), and `python -m orchestrator.popularity
show|warm` (`cli.py`)."""
