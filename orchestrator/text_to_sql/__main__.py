"""`python -m orchestrator.text_to_sql seed [--reseed] [--dataset-root DIR]`."""

from orchestrator.text_to_sql.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
