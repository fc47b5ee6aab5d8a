"""Command-line conventions shared by every `python -m tfsparse.*` entry point.

Bad input is the user's problem to fix, not ours to debug: it gets one line on
stderr naming the bad value and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import os
import sys
from typing import Callable, Sequence

from tfsparse.errors import TfsparseError, UserError, one_line, unknown_name  # noqa: F401  (re-exported)
from tfsparse.stderr import captured_stderr

# (the prog a stage's parser names itself with, the name to show instead): set by the
# `tfsparse` command so that `tfsparse export --help` says "tfsparse export", not "python -m ...".
_program_name: tuple[str, str] | None = None


def name_program(own: str, shown: str) -> None:
    """Makes the parser that calls itself `own` (with or without "python -m ") show `shown`."""
    global _program_name
    _program_name = (own, shown)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints usage + error)."""

    def __init__(self, *args, **kwargs):
        prog = kwargs.get("prog")
        if _program_name and prog and prog.removeprefix("python -m ") == _program_name[0]:
            kwargs["prog"] = _program_name[1]
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


# ---- options several commands share, declared once ------------------------------------------


class _AtLeast(argparse.Action):
    """`type=int` plus a lower bound, with the one-line error "--runs must be >= 1, got 0"."""

    minimum = 1

    def __call__(self, parser, namespace, values, option_string=None):
        if values < self.minimum:
            parser.error(f"{option_string} must be >= {self.minimum}, got {values}")
        setattr(namespace, self.dest, values)


def at_least(minimum: int) -> type[argparse.Action]:
    """An argparse action for an int option with a lower bound: `action=at_least(1)`."""
    return type(f"AtLeast{minimum}", (_AtLeast,), {"minimum": minimum})


def add_overrides(parser: argparse.ArgumentParser, help: str = "override a recipe value (repeatable)") -> None:
    """`--set SECTION.KEY=VALUE`, repeatable: recipe overrides (tfsparse.recipe.load_recipe)."""
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help=help)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """`--quiet`: no progress lines (per epoch, per variant, per model)."""
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def add_runs(parser: argparse.ArgumentParser, default: int | None,
             help: str = "timed runs per model") -> None:
    """`--runs N` (N >= 1): timed runs per model in a benchmark."""
    suffix = f" (default {default})" if default is not None and "default" not in help else ""
    parser.add_argument("--runs", type=int, default=default, action=at_least(1), help=help + suffix)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Silences file descriptor 2 while TensorFlow's C++ runtime loads.

    TensorFlow 2.21 logs oneDNN/CUDA notices through absl before any log level
    applies (TF_CPP_MIN_LOG_LEVEL does not reach them), burying our one-line
    errors and progress. Set TFSPARSE_TF_LOGS=1 to see them.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec(module):
            with captured_stderr():
                exec_module(module)

        spec.loader.exec_module = quiet_exec
        return spec


def quiet_tensorflow_startup():
    """For command-line runs: no TensorFlow start-up noise on stderr."""
    if os.environ.get("TFSPARSE_TF_LOGS") or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def run_main(prog: str, main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Runs `main(argv)`; maps any TfsparseError (UserError included) to one line + exit 2,
    Ctrl-C to 130."""
    quiet_tensorflow_startup()
    try:
        return int(main(argv) or 0)
    except TfsparseError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)  # always exactly one line
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return closed_stdout()


def closed_stdout() -> int:
    """`tfsparse ... | head`: the reader left. Exit quietly, as `cat` does (status 141 is the
    shell's SIGPIPE; 1 is what the Python docs suggest), without Python's flush-at-exit error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1
