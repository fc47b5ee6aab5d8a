"""Fetch the offline data sets into ~/.cache/tfsparse (run once; `make data` does it).

    python -m tfsparse.datasets fetch               # every data set
    python -m tfsparse.datasets fetch fashion_mnist
"""

from __future__ import annotations

import sys

from tfsparse import datasets
from tfsparse.cli import ArgumentParser, run_main


def main(argv=None):
    parser = ArgumentParser(prog="python -m tfsparse.datasets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download and cache data sets")
    fetch.add_argument("names", nargs="*", help=f"data sets (default: all of {', '.join(datasets.names())})")
    args = parser.parse_args(argv)
    for name in args.names or datasets.names():
        print(f"{name}: {datasets.get(name).fetch()}")


if __name__ == "__main__":
    sys.exit(run_main("tfsparse.datasets", main))
