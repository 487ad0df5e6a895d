"""`python -m orchestrator.prefix_index show|warm [options]`."""

from orchestrator.prefix_index.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
