"""Every benchmark, one after another, each rewriting its own section of docs/benchmarks.md.

    python -m bench [--only NAME ...] [--output docs/benchmarks.md]

Takes under ten minutes on a 2-core machine (the first run of `scale` also builds its data set,
about a minute and a half). PostgreSQL: TODO_MCP_TEST_PG, default postgresql://postgres@127.0.0.1:5432/postgres.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

# In the order they run; each is a module of this package with a main(argv).
BENCHMARKS = ("tools_list", "round_trips", "client_cost", "cold_start", "scale", "load", "ledger", "abuse")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--output", default="docs/benchmarks.md", help="markdown file to update; - for none")
    args = parser.parse_args(argv)
    started = time.monotonic()
    for name in args.only or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        module.main(["--output", args.output])
        print(f"bench: {name} took {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    print(f"bench: all done in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
