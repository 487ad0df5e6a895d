"""Release 0.1's name of `orchestrator.popularity`: `python -m orchestrator.prefix_index` still
runs its command line, with a notice, for one release."""
