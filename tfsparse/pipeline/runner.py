"""One command from recipe to report: train -> export -> bench -> report + model card.

    python -m tfsparse.pipeline models/mobilenet_v1.toml                  # what `make full` runs (`make demo`: 3 + 6 epochs)
    python -m tfsparse.pipeline models/mobilenet_v1.toml --quick          # smoke size, ~2 minutes
    python -m tfsparse.pipeline models/mobilenet_v1.toml --set pruning.final_sparsity=0.8 --out reports/mnv1_80
    python -m tfsparse.pipeline models/mobilenet_v1.toml --skip-arm64     # no qemu provisioning
    python -m tfsparse.pipeline models/mobilenet_v1.toml --arm64-variants fp32 --runs 5   # shorter arm64 bench

Without `--out`, the training run goes to `runs/<name>/`, the files to ship to
`export/<name>/` (.tflite files, manifest.json, README.md model card) and the rest to
`reports/<name>/`:

    bench/host.json, bench/arm64-emu.json, bench/android/   (python -m tfsparse.bench, android_bench)
    report.md, results.csv, results.json, *_vs_sparsity.png (tfsparse.reporting.report)
    pipeline.json       what each stage did and how long it took

With `--out DIR` everything (also `runs/<name>/` and `export/<name>/`) goes under DIR.

`<name>` is the recipe's file name (`--name` to change it; the sweep uses `<recipe>-sp90`).
Each stage runs in this process through its command's own `main` (what `tfsparse <stage>`
runs), and the pipeline is resumable: run the same command again after Ctrl-C or a crash. A stage whose outputs exist
and are newer than its inputs is skipped; an unfinished training run continues with
`--resume` (and then keeps the options it was started with). The report and the model
card are always regenerated (they read only JSON).

The Android stage (`python -m tfsparse.android_bench`, what `android_bench/run.sh` runs)
runs when `adb devices` lists a device and `TFSPARSE_BENCHMARK_MODEL` names a
benchmark_model binary (see android_bench/README.md); otherwise it is skipped and the
report says so. `--quick` trains 1 epoch per phase on 1024 images, exports only
fp32, and times 3 runs per model: a smoke test of the whole chain, not a result.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from tfsparse import atomic, cli
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.exporting.manifest import MANIFEST_NAME
from tfsparse.recipe import load_recipe
from tfsparse.run_folder import RunFolder

PROG = "tfsparse.pipeline"
STATE_NAME = "pipeline.json"
QUICK_TRAIN = ["--epochs", "1", "--max-train-examples", "1024"]
QUICK_EXPORT = ["--variants", "fp32"]
QUICK_BENCH = {"runs": 3, "warmup": 1}
FULL_BENCH = {"runs": 10, "warmup": 2}
SETTINGS = ("recipe", "name", "quick", "set")  # what makes a folder's results what they are


class StageFailed(Exception):
    """A stage's program exited with an error; its own output (above) says why."""


def parse_args(argv):
    parser = ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe TOML, e.g. models/mobilenet_v1.toml")
    parser.add_argument("--out", help="output folder (default: reports/<recipe name>)")
    parser.add_argument("--name", help="run/export name (default: the recipe's file name)")
    parser.add_argument("--quick", action="store_true", help="smoke size: 1 epoch on 1024 images, fp32 only, 3 runs")
    cli.add_overrides(parser, "override a recipe value (repeatable), passed to training")
    parser.add_argument("--from", dest="from_model", metavar="DENSE.keras",
                        help="skip dense training: prune this trained dense model (the sweep shares one this way)")
    parser.add_argument("--skip-arm64", action="store_true", help="no emulated arm64 benchmark")
    cli.add_quiet(parser)
    cli.add_runs(parser, None, "timed runs per model in each benchmark (default 10, --quick 3)")
    parser.add_argument("--arm64-variants", metavar="LIST",
                        help="sparse variants timed under arm64 emulation, with the dense baseline "
                             "(default: every exported file; --quick: fp32)")
    args = parser.parse_args(argv)
    if not Path(args.recipe).is_file():
        parser.error(f"no such recipe file: {args.recipe}")
    if args.from_model and not Path(args.from_model).is_file():
        parser.error(f"--from: no such model file: {args.from_model}")
    return args


# ---- stages -----------------------------------------------------------------------------


def run_stage(command: str, args: list[str]) -> int:
    """Runs the stage `tfsparse <command> args` in this process and returns its exit status.

    In-process (no subprocess per stage): the same `main(argv)` the command runs, so the
    pipeline does exactly what the stage's own command does, TensorFlow is imported once,
    and a bad value raises a TfsparseError that reaches the user as one line.
    """
    import importlib

    from tfsparse.commands import COMMANDS

    print(f"[pipeline] tfsparse {command} {' '.join(args)}", flush=True)
    return int(importlib.import_module(COMMANDS[command][0]).main(args) or 0)


def _newer(path: Path, *than: Path) -> bool:
    """`path` exists and was written after every existing file in `than`."""
    if not path.is_file():
        return False
    return all(path.stat().st_mtime >= t.stat().st_mtime for t in than if t.is_file())


def train_done(run_dir: Path) -> bool:
    return RunFolder(run_dir).finished()


def export_done(export_dir: Path, run_dir: Path) -> bool:
    manifest = export_dir / MANIFEST_NAME
    run = RunFolder(run_dir)
    if not _newer(manifest, run.metrics, run.sparse_model):
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    return all((export_dir / e["path"]).is_file() for e in files)


def android_configured() -> tuple[bool, str]:
    """(ready, why not): a device in `adb devices` and TFSPARSE_BENCHMARK_MODEL set."""
    binary = os.environ.get("TFSPARSE_BENCHMARK_MODEL")
    if not binary:
        return False, "TFSPARSE_BENCHMARK_MODEL is not set (see android_bench/README.md)"
    adb = os.environ.get("ADB") or shutil.which("adb")
    if not adb:
        return False, "adb not found (set ADB or put it on PATH)"
    try:
        out = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"adb devices failed: {e}"
    # "SERIAL<tab>device" (or spaces and details with -l); other states are not usable.
    devices = [line for line in out.splitlines()[1:] if line.split()[1:2] == ["device"]]
    return (True, "") if devices else (False, "adb devices lists no ready device")


class Pipeline:
    """The stages of one run, in order, each skipped when its outputs are complete."""

    def __init__(self, args):
        self.args = args
        self.name = args.name or Path(args.recipe).stem
        self.out = Path(args.out or Path("reports") / self.name)
        if args.out:  # a self-contained folder (sweep points, experiments)
            self.run_dir = self.out / "runs" / self.name
            self.export_dir = self.out / "export" / self.name
        else:  # the project's layout: runs/<name>, export/<name> (what users ship), reports/<name>
            self.run_dir = Path("runs") / self.name
            self.export_dir = Path("export") / self.name
        self.bench_dir = self.out / "bench"
        bench = QUICK_BENCH if args.quick else FULL_BENCH
        self.bench_opts = ["--runs", str(args.runs or bench["runs"]), "--warmup", str(bench["warmup"])]
        self.state = {"recipe": str(Path(args.recipe).resolve()), "name": self.name, "quick": args.quick, "set": args.set,
                      "from": args.from_model, "started": _now(), "finished": False, "stages": {}, "skipped": {}}

    def save(self):
        atomic.write_json(self.out / STATE_NAME, self.state)

    def stage(self, name: str, done: bool, action) -> None:
        if done:
            print(f"[pipeline] {name}: complete, skipped", flush=True)
            self.state["stages"][name] = {"status": "complete (skipped)", "seconds": 0.0}
            return
        start = time.monotonic()
        action()
        self.state["stages"][name] = {"status": "ran", "seconds": round(time.monotonic() - start, 1)}
        self.save()

    def train(self):
        if RunFolder(self.run_dir).state.is_file():
            args = [self.args.recipe, "--out", str(self.run_dir), "--resume"]
        else:
            args = [self.args.recipe, "--out", str(self.run_dir), *sum((["--set", s] for s in self.args.set), [])]
            args += QUICK_TRAIN if self.args.quick else []
            args += ["--from", self.args.from_model] if self.args.from_model else []
        args += ["--quiet"] if self.args.quiet else []
        if run_stage("train", args) != 0:
            raise StageFailed("train")

    def export(self):
        rc = run_stage("export", [str(self.run_dir), "--out", str(self.export_dir),
                                  *(QUICK_EXPORT if self.args.quick else [])])
        # Exit 1: some variant does not run with LiteRT (recorded in the manifest, kept out of
        # the shipping list); the others are fine to benchmark and report.
        if rc not in (0, 1) or not (self.export_dir / MANIFEST_NAME).is_file():
            raise StageFailed("export")

    def bench(self, target: str):
        files = [str(self.export_dir)]
        variants = self.args.arm64_variants or ("fp32" if self.args.quick else None)
        if target == "arm64-emu" and variants:
            # Emulation costs seconds per model and process start: the fp32 pair is enough for a smoke run.
            wanted = [v.strip() for v in variants.split(",") if v.strip()]
            files = [str(self.export_dir / f"{self.name}.dense.fp32.tflite")]
            files += [str(self.export_dir / f"{self.name}.sparse.{v}.tflite") for v in wanted
                      if (self.export_dir / f"{self.name}.sparse.{v}.tflite").is_file()]
            if len(files) == 1:
                raise UserError(f"--arm64-variants {variants}: {self.export_dir} has no such sparse file")
        if run_stage("bench", ["--target", target, *self.bench_opts, "--json",
                               str(self.bench_dir / f"{target}.json"), *files]) != 0:
            raise StageFailed(f"bench {target}")

    def android(self):
        # The module itself, not android_bench/run.sh: the script is not part of an installed package.
        rc = run_stage("android-bench",
                       ["--out", str(self.bench_dir / "android"), "--runs", self.bench_opts[1], str(self.export_dir)])
        if rc not in (0, 1):  # 1: some runs failed, recorded in its report
            raise StageFailed("android bench")

    def check_same_settings(self) -> None:
        """A folder holds one experiment: resuming it with other settings would mix results.

        A folder where no stage finished and no training started (the earlier command stopped
        on bad input, e.g. a `--set` the trainer refused) holds no results: it starts afresh,
        so the corrected command is not refused for differing from the mistaken one.
        """
        try:
            previous = json.loads((self.out / STATE_NAME).read_text())
        except (OSError, ValueError):
            return
        if not previous.get("stages") and not RunFolder(self.run_dir).state.is_file():
            return
        for key in SETTINGS:
            if previous.get(key) != self.state[key]:
                raise UserError(f"{self.out} holds a pipeline run with {key} = {previous.get(key)!r}, not "
                                f"{self.state[key]!r}: run the same command to resume it, or use another --out")

    def run(self) -> dict:
        load_recipe(self.args.recipe, self.args.set)  # a bad value: one line, before anything is written
        self.check_same_settings()
        self.out.mkdir(parents=True, exist_ok=True)
        self.save()
        manifest = self.export_dir / MANIFEST_NAME
        self.stage("train", train_done(self.run_dir), self.train)
        self.stage("export", export_done(self.export_dir, self.run_dir), self.export)
        self.stage("bench host", _newer(self.bench_dir / "host.json", manifest), lambda: self.bench("host"))
        if self.args.skip_arm64:
            self.state["skipped"]["arm64-emu"] = "--skip-arm64"
        else:
            self.stage("bench arm64-emu", _newer(self.bench_dir / "arm64-emu.json", manifest),
                       lambda: self.bench("arm64-emu"))
        ready, why = android_configured()
        if ready:
            self.stage("bench android", _newer(self.bench_dir / "android" / "results.json", manifest), self.android)
        else:
            self.state["skipped"]["android"] = why
            print(f"[pipeline] android: skipped: {why}", flush=True)
        return self.report()

    def report(self) -> dict:
        from tfsparse.reporting import model_card, report

        point = report.collect_point(self.name, self.run_dir, self.export_dir, self.bench_dir)
        point["skipped"] = dict(self.state["skipped"])
        title = f"{self.name}: dense vs sparse" + (" (--quick smoke run, not a result)" if self.args.quick else "")
        written = report.write(self.out, title, [point])
        written.append(model_card.write(self.export_dir, self.bench_dir, self.run_dir))
        self.state.update(finished=True, ended=_now())
        self.save()  # last: a point is finished once this says so (tfsparse.pipeline.sweep relies on it)
        print(f"[pipeline] report: {written[0]}  model card: {written[-1]}  ship: {self.export_dir}/", flush=True)
        return point


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pipeline = Pipeline(args)
    try:
        pipeline.run()
    except StageFailed as e:
        print(f"{PROG}: error: stage '{e}' failed (its output is above); fix it and run the same command "
              "again to continue from that stage", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
