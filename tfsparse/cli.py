"""Command-line conventions shared by every `python -m tfsparse.*` entry point.

Bad input is the user's problem to fix, not ours to debug: it gets one line on
stderr naming the bad value and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints usage + error)."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def run_main(prog: str, main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Runs `main(argv)`; maps UserError to one line + exit 2, Ctrl-C to 130."""
    try:
        return int(main(argv) or 0)
    except UserError as e:
        message = " ".join(str(e).split())  # always exactly one line
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
