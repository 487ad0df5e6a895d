"""`python -m eval.readme_tables`: the same as `python -m eval readme-tables`."""

import sys

from eval.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["readme-tables", *sys.argv[1:]]))
