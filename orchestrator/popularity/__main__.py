"""`python -m orchestrator.popularity show|warm [options]`."""

from orchestrator.popularity.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
