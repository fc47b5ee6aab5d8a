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
import sys
from typing import Sequence

from tfsparse import cli

# command: (module, the prog its parser names itself with, one line for --help)
COMMANDS = {
    "train": ("tfsparse.train", "tfsparse.train",
              "train a recipe: dense phase, then TF-MOT magnitude pruning (resumable)"),
    "export": ("tfsparse.export", "tfsparse.export",
               "a trained run -> sparse .tflite files, each checked and measured, + manifest.json"),
    "inspect": ("tfsparse.inspect", "tfsparse.inspect",
                "is a .tflite sparse, and will XNNPACK run it sparse on a phone?"),
    "twin": ("tfsparse.twin", "tfsparse.twin", "the dense twin of a sparse .tflite (same weights, stored dense)"),
    "bench": ("tfsparse.bench", "tfsparse.bench", "time .tflite files on the host or an emulated arm64 CPU"),
    "android-bench": ("tfsparse.android_bench", "tfsparse.android_bench",
                      "time .tflite files on an Android phone or emulator over adb"),
    "pipeline": ("tfsparse.pipeline", "tfsparse.pipeline",
                 "recipe -> train -> export -> bench -> report + model card, resumable"),
    "sweep": ("tfsparse.sweep", "tfsparse.sweep", "the pipeline at several sparsities, one dense model shared"),
    "report": ("tfsparse.report", "tfsparse.report", "re-render a pipeline or sweep report from its JSON"),
    "data": ("tfsparse.datasets.__main__", "tfsparse.datasets", "fetch the offline data sets into the cache"),
    "fuzz": ("tfsparse.fuzz", "tfsparse.fuzz", "mutated .tflite files through the inspector: crashes, hangs"),
    "structure-study": ("tfsparse.structure_study", "tfsparse.structure_study",
                        "unstructured vs block vs 2:4 pruning, trained and timed"),
}


def usage() -> str:
    import tfsparse

    width = max(map(len, COMMANDS))
    lines = ["usage: tfsparse <command> [options]   (tfsparse <command> --help for its options)", "",
             f"tfsparse {tfsparse.__version__}: sparse Keras networks -> XNNPACK-ready TFLite files.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {line}" for name, (_, _, line) in COMMANDS.items()]
    lines += ["", "Python API: import tfsparse; help(tfsparse.api)"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        import tfsparse

        print(f"tfsparse {tfsparse.__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"tfsparse: error: {cli.unknown_name('command', name, COMMANDS)}", file=sys.stderr)
        return 2
    module_name, own_prog, _ = COMMANDS[name]
    prog = f"tfsparse {name}"
    cli.name_program(own_prog, prog)
    module = importlib.import_module(module_name)
    return cli.run_main(prog, module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
