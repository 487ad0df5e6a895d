"""`python -m eval`: the eval's command line (`eval/cli.py`)."""

from eval.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
