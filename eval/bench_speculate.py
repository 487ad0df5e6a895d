"""`python -m eval.bench_speculate`: the same as `python -m eval bench-speculate`."""

import sys

from eval.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench-speculate", *sys.argv[1:]]))
