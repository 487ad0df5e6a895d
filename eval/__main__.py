"""`python -m eval`: not built yet; it reports no figures until it measures them."""

import sys


def main() -> int:
    print(
        "error: the eval harness is not built yet (see the text-to-SQL and eval issue)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
