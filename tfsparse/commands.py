"""`tfsparse <command>`: one command-line program for every stage.

    tfsparse --help
    tfsparse train models/mobilenet_v1.toml
    tfsparse pipeline models/mobilenet_v1.toml --quick
    tfsparse inspect export/mobilenet_v1/mobilenet_v1.sparse.fp32.tflite

Each subcommand is the stage's own program (`python -m tfsparse.<stage>` keeps working,
with the same options): this module only dispatches, and names the program
`tfsparse <command>` in its usage and error lines.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Sequence

from tfsparse import cli
from tfsparse._version import __version__

# command: (the module whose `main(argv)` runs it, one line for --help). The stage packages
# hold the code; this table is the only place that names the commands.
COMMANDS = {
    "train": ("tfsparse.training.command",
              "train a recipe: dense phase, then TF-MOT magnitude pruning (resumable)"),
    "export": ("tfsparse.exporting.exporter",
               "a trained run -> sparse .tflite files, each checked and measured, + manifest.json"),
    "inspect": ("tfsparse.tflite.inspector", "is a .tflite sparse, and will XNNPACK run it sparse on a phone?"),
    "twin": ("tfsparse.tflite.twin", "the dense twin of a sparse .tflite (same weights, stored dense)"),
    "bench": ("tfsparse.benchmarking.bench", "time .tflite files on the host or an emulated arm64 CPU"),
    "android-bench": ("tfsparse.benchmarking.android", "time .tflite files on an Android phone or emulator over adb"),
    "pipeline": ("tfsparse.pipeline.runner", "recipe -> train -> export -> bench -> report + model card, resumable"),
    "sweep": ("tfsparse.pipeline.sweep", "the pipeline at several sparsities, one dense model shared"),
    "report": ("tfsparse.reporting.report", "re-render a pipeline or sweep report from its JSON"),
    "model-card": ("tfsparse.reporting.model_card", "write an export folder's model card (README.md)"),
    "export-table": ("tfsparse.reporting.export_table", "an export folder's table, from its manifest.json"),
    "data": ("tfsparse.datasets.__main__", "fetch the offline data sets into the cache"),
    "fuzz": ("tfsparse.tflite.fuzz", "mutated .tflite files through the inspector: crashes, hangs"),
    "doctor": ("tfsparse.doctoring.doctor",
               "make a Keras model XNNPACK-ready: what blocks the sparse path, where, why; --fix rewrites it"),
    "structure-study": ("tfsparse.experiments.structure_study",
                        "experiment: unstructured vs block vs 2:4 pruning, trained and timed"),
    "compare-methods": ("tfsparse.experiments.compare_methods",
                        "experiment: gradual pruning vs static/SET/RigL sparse training, same budget"),
}

# `python -m tfsparse.<name>`, the form every command had before the stage packages existed,
# for the commands whose package is named apart from the command. There is no file
# `tfsparse/train.py`: a module of that name would take the place of the function
# `tfsparse.train` whenever something imported it.
MODULE_ALIASES = {"train": "train", "export": "export", "inspect": "inspect", "twin": "twin", "bench": "bench",
                  "android_bench": "android-bench", "sweep": "sweep", "report": "report",
                  "model_card": "model-card", "report_export": "export-table", "fuzz": "fuzz",
                  "structure_study": "structure-study", "compare_methods": "compare-methods", "doctor": "doctor"}


class _CommandAliasLoader(importlib.abc.InspectLoader):
    """Runs `python -m tfsparse.<alias>` as `tfsparse <command>`; refuses a plain import.

    runpy (`python -m`) asks a loader for code and runs it as `__main__`; an `import` calls
    `exec_module`, which raises, so `import tfsparse.train` cannot hide `tfsparse.train()`.
    """

    def __init__(self, alias: str):
        self.alias = alias

    def get_source(self, fullname):
        command = MODULE_ALIASES[self.alias]
        return ("import sys\nfrom tfsparse.commands import run_alias\n"
                f"sys.exit(run_alias({self.alias!r}, {command!r}))\n")

    def exec_module(self, module):
        command = MODULE_ALIASES[self.alias]
        raise ImportError(f"tfsparse.{self.alias} is the command `python -m tfsparse.{self.alias}` "
                          f"(module {COMMANDS[command][0]}); the function is tfsparse.{self.alias}",
                          name=module.__name__)


class _CommandAliasFinder(importlib.abc.MetaPathFinder):
    """Finds `tfsparse.<alias>` (after every real module: a real file always wins)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, alias = fullname.rpartition(".")
        if package != "tfsparse" or alias not in MODULE_ALIASES:
            return None
        return importlib.util.spec_from_loader(fullname, _CommandAliasLoader(alias),
                                               origin=f"python -m tfsparse.{alias}")


def install_module_aliases() -> None:
    """Called by `tfsparse/__init__.py`, so that `python -m tfsparse.<alias>` resolves."""
    if not any(isinstance(f, _CommandAliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_CommandAliasFinder())


def run_alias(alias: str, command: str) -> int:
    """`python -m tfsparse.<alias> ARGS`: the command, with usage and errors naming the form typed."""
    module_name = COMMANDS[command][0]
    return cli.run_main(f"tfsparse.{alias}", importlib.import_module(module_name).main, sys.argv[1:])


def _own_prog(command: str) -> str:
    """The prog a command's parser names itself with: its `python -m` form without "python -m "."""
    packages = {"data": "tfsparse.datasets", "pipeline": "tfsparse.pipeline"}  # `python -m <package>`
    aliases = {c: f"tfsparse.{a}" for a, c in MODULE_ALIASES.items()}
    return {**packages, **aliases}[command]


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: tfsparse <command> [options]   (tfsparse <command> --help for its options)", "",
             f"tfsparse {__version__}: sparse Keras networks -> XNNPACK-ready TFLite files.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {line}" for name, (_, line) in COMMANDS.items()]
    lines += ["", "Python API: import tfsparse; help(tfsparse.api)"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        try:
            print(usage(), file=sys.stdout if argv else sys.stderr, flush=True)
        except BrokenPipeError:
            return cli.closed_stdout()
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"tfsparse {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"tfsparse: error: {cli.unknown_name('command', name, COMMANDS)}", file=sys.stderr)
        return 2
    module_name, _ = COMMANDS[name]
    prog = f"tfsparse {name}"
    cli.name_program(_own_prog(name), prog)
    module = importlib.import_module(module_name)
    return cli.run_main(prog, module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
