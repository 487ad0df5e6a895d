"""`python -m eval.bench_keystrokes`: the same as `python -m eval bench-keystrokes`."""

import sys

from eval.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench-keystrokes", *sys.argv[1:]]))
