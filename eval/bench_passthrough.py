"""`python -m eval.bench_passthrough`: the same as `python -m eval bench-passthrough`."""

import sys

from eval.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench-passthrough", *sys.argv[1:]]))
