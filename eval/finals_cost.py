"""`python -m eval.finals_cost`: the same as `python -m eval finals-cost`."""

import sys

from eval.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["finals-cost", *sys.argv[1:]]))
