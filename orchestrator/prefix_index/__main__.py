"""`python -m orchestrator.prefix_index`: the former name of `python -m orchestrator.popularity`
(kept for one release)."""

import sys

from orchestrator.popularity.cli import main

if __name__ == "__main__":
    print(
        "note: `python -m orchestrator.prefix_index` is now `python -m orchestrator.popularity`; "
        "the old name goes in the next release",
        file=sys.stderr,
    )
    raise SystemExit(main())
