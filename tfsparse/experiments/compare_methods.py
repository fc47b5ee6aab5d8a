"""Experiment: gradual pruning vs sparse from the first step (static, SET, RigL) on one recipe.

    tfsparse compare-methods models/mobilenet_v1.toml --methods gradual,static,set,rigl
    tfsparse compare-methods models/mobilenet_v1.toml --methods gradual,static-uniform,static-erk,set,rigl-erk \\
        --epochs 3 --max-train-examples 12000 --out reports/mobilenet_v1-methods
    tfsparse compare-methods ... (the same command again)      # resumes: finished methods are skipped

Every method trains the same recipe with the same total epochs, training examples and
`final_sparsity`: a gradual run trains `dense_epochs` dense and then `epochs` while TF-MOT
prunes; static/SET/RigL train sparse for `dense_epochs + epochs` (`tfsparse.training.from_scratch`),
each phase capped by `--epochs` the same way. A method is `gradual`, `static`, `set` or `rigl`,
with `-uniform` or `-erk` for the layer sparsities of the last three (`pruning.distribution`).

Per method, under `--out` (default `reports/<recipe>-methods`): `<label>/runs/<label>` (the
training run), `<label>/export/<label>` (fp32 sparse file + dense baseline, manifest.json)
and `<label>/bench/arm64-emu.json` (the sparse file against its dense twin on the emulated
arm64 CPU; `--skip-arm64` leaves it out). Then `methods.md` (one table), `methods.json` and
`accuracy_vs_time.png` (test accuracy against training seconds). Each stage is skipped when
its output is complete and an unfinished training run resumes, so an interrupted comparison
continues where it stopped; the table is rewritten after every method.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Sequence

from tfsparse import atomic, cli
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.exporting.manifest import MANIFEST_NAME
from tfsparse.pipeline import runner
from tfsparse.recipe import PRUNING_METHODS, SPARSE_DISTRIBUTIONS, load_recipe
from tfsparse.run_folder import RunFolder

PROG = "tfsparse.compare_methods"
SETTINGS_NAME = "settings.json"


def parse_methods(text: str) -> list[tuple[str, str, str | None]]:
    """`gradual,static-erk,rigl` -> [(label, method, distribution or None), ...]."""
    methods = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        method, _, distribution = part.partition("-")
        if method not in PRUNING_METHODS:
            raise cli.unknown_name("method", method, PRUNING_METHODS)
        if distribution and distribution not in SPARSE_DISTRIBUTIONS:
            raise cli.unknown_name(f"distribution in {part!r}", distribution, SPARSE_DISTRIBUTIONS)
        if distribution and method == "gradual":
            raise UserError(f"--methods {part}: gradual takes no distribution (TF-MOT prunes every layer to the target)")
        methods.append((part, method, distribution or None))
    if not methods:
        raise UserError("--methods: empty list (e.g. gradual,static,set,rigl)")
    labels = [m[0] for m in methods]
    if len(set(labels)) != len(labels):
        raise UserError(f"--methods: {text!r} names a method twice")
    return methods


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


class Comparison:
    def __init__(self, args):
        self.args = args
        self.recipe = Path(args.recipe)
        self.out = Path(args.out or Path("reports") / f"{self.recipe.stem}-methods")
        self.methods = parse_methods(args.methods)
        self.settings = {"recipe": str(self.recipe.resolve()), "set": args.set, "epochs": args.epochs,
                         "max_train_examples": args.max_train_examples}

    def folders(self, label: str):
        base = self.out / label
        return base / "runs" / label, base / "export" / label, base / "bench"

    def check_settings(self):
        """One folder, one budget: resuming with other settings would mix incomparable rows."""
        path = self.out / SETTINGS_NAME
        if path.is_file():
            previous = json.loads(path.read_text())
            for key, value in self.settings.items():
                if previous.get(key) != value:
                    raise UserError(f"{self.out} holds a comparison with {key} = {previous.get(key)!r}, not "
                                    f"{value!r}: run the same command to resume it, or use another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, self.settings)

    def train(self, label: str, method: str, distribution: str | None):
        run_dir, _, _ = self.folders(label)
        if RunFolder(run_dir).finished():
            print(f"[compare] {label}: trained earlier, skipped", flush=True)
            return
        if RunFolder(run_dir).state.is_file():
            args = [str(self.recipe), "--out", str(run_dir), "--resume"]
        else:
            overrides = [*self.args.set, f'pruning.method="{method}"']
            overrides += [f'pruning.distribution="{distribution}"'] if distribution else []
            args = [str(self.recipe), "--out", str(run_dir), *sum((["--set", s] for s in overrides), [])]
            args += ["--epochs", str(self.args.epochs)] if self.args.epochs else []
            args += ["--max-train-examples", str(self.args.max_train_examples)] if self.args.max_train_examples else []
        args += ["--quiet"] if self.args.quiet else []
        if runner.run_stage("train", args) != 0:
            raise UserError(f"{label}: training failed (output above); run the same command again to resume")

    def export(self, label: str):
        run_dir, export_dir, _ = self.folders(label)
        if runner.export_done(export_dir, run_dir):
            return
        rc = runner.run_stage("export", [str(run_dir), "--out", str(export_dir), "--variants", "fp32"])
        if rc not in (0, 1) or not (export_dir / MANIFEST_NAME).is_file():
            raise UserError(f"{label}: export failed (output above)")

    def bench(self, label: str):
        _, export_dir, bench_dir = self.folders(label)
        out = bench_dir / "arm64-emu.json"
        if self.args.skip_arm64 or runner._newer(out, export_dir / MANIFEST_NAME):
            return
        files = [str(export_dir / f"{label}.dense.fp32.tflite"), str(export_dir / f"{label}.sparse.fp32.tflite")]
        if runner.run_stage("bench", ["--target", "arm64-emu", "--runs", str(self.args.runs), "--json", str(out),
                                      *files]) != 0:
            raise UserError(f"{label}: arm64-emu benchmark failed (output above)")

    def row(self, label: str, method: str, distribution: str | None) -> dict:
        run_dir, export_dir, bench_dir = self.folders(label)
        run = RunFolder(run_dir)
        metrics = run.read_metrics()
        state = json.loads(run.state.read_text())
        seconds = [s for phase in ("dense", "pruning") for s in state["seconds"].get(phase, [])]
        epochs = sum(metrics["epochs"].values())
        row = {"label": label, "method": method,
               "distribution": distribution or ("-" if method == "gradual" else "uniform"),
               "epochs": metrics["epochs"], "total_epochs": epochs, "train_examples": metrics["train_examples"],
               "target_sparsity": metrics["target_sparsity"], "sparsity": metrics["overall_sparsity"],
               "layer_sparsity": metrics["layer_sparsity"], "keras_accuracy": metrics["sparse_score"],
               "train_seconds": round(sum(seconds), 1),
               "seconds_per_epoch": round(sum(seconds) / len(seconds), 2) if seconds else None,
               "mask_updates": len(state.get("mask_updates", [])),
               "connections_changed": sum(e["changed_total"] for e in state.get("mask_updates", []))}
        manifest = json.loads((export_dir / MANIFEST_NAME).read_text())
        sparse = next(f for f in manifest["files"] if not f["dense"] and f["variant"] == "fp32")
        row.update(litert_accuracy=sparse.get("score"), fp32_sparse_bytes=sparse["bytes"],
                   xnnpack=sparse["xnnpack"]["verdict"])
        bench = bench_dir / "arm64-emu.json"
        row["arm64_emu_vs_same_weights"] = None
        if bench.is_file():
            report = json.loads(bench.read_text())
            row["arm64_emu_vs_same_weights"] = next(
                (p["speedup"] for p in report["pairs"] if p["baseline_kind"] == "same_weights"
                 and p["sparse"].endswith(".sparse.fp32.tflite")), None)
        return row

    def write(self, rows: list[dict], started: str):
        recipe = load_recipe(self.recipe, self.args.set)
        budget = (f"{rows[0]['total_epochs'] if rows else '?'} epochs in total per method "
                  f"(--epochs {self.args.epochs or 'not set'}), {rows[0]['train_examples'] if rows else '?'} "
                  f"training examples, final_sparsity {recipe.pruning.final_sparsity}, policy {recipe.pruning.policy!r}")
        lines = [f"# {self.recipe.stem}: gradual pruning vs sparse from the first step", "",
                 f"Budget: {budget}. Load average at start {started}, at end {_loadavg()} (2 cores).",
                 "Accuracy: LiteRT fp32 sparse file on the test split (Keras in brackets). Seconds per epoch: "
                 "mean wall time of the run's epochs on this host. arm64-emu: the sparse fp32 file against its "
                 "dense twin (same weights), emulated Cortex-A76, 1 thread.", "",
                 "| method | distribution | epochs | accuracy | sparsity | s/epoch | mask updates (connections changed) "
                 "| fp32 sparse size | XNNPACK | arm64-emu vs same weights |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            speed = f"{r['arm64_emu_vs_same_weights']:.2f}x" if r["arm64_emu_vs_same_weights"] else "not measured"
            updates = f"{r['mask_updates']} ({r['connections_changed']})" if r["method"] in ("set", "rigl") else "-"
            epochs = " + ".join(str(v) for v in r["epochs"].values() if v) + (
                " (dense + pruning)" if r["method"] == "gradual" else " (sparse)")
            acc = r["litert_accuracy"]
            lines.append(f"| {r['label']} | {r['distribution']} | {epochs} | "
                         f"{100 * acc:.2f}% ({100 * r['keras_accuracy']:.2f}%) | {100 * r['sparsity']:.2f}% | "
                         f"{r['seconds_per_epoch']} | {updates} | {r['fp32_sparse_bytes'] / 1024:.1f} KiB | "
                         f"{r['xnnpack']} | {speed} |")
        atomic.write_text(self.out / "methods.md", "\n".join(lines) + "\n")
        atomic.write_json(self.out / "methods.json", {"settings": self.settings, "budget": budget,
                                                      "loadavg_start": started, "loadavg_end": _loadavg(),
                                                      "rows": rows})
        self.plot(rows)

    def plot(self, rows: list[dict]):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rows:
            ax.scatter(r["train_seconds"], 100 * r["litert_accuracy"])
            ax.annotate(r["label"], (r["train_seconds"], 100 * r["litert_accuracy"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.set_xlabel("training time (s, this host)")
        ax.set_ylabel("test accuracy (%), fp32 sparse LiteRT")
        ax.set_title(f"{self.recipe.stem}: same epochs, same final sparsity")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic.atomic_path(self.out / "accuracy_vs_time.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)

    def run(self) -> list[dict]:
        self.check_settings()
        started = _loadavg()
        rows = []
        for i, (label, method, distribution) in enumerate(self.methods):
            print(f"[compare] {label} ({i + 1}/{len(self.methods)})", flush=True)
            start = time.monotonic()
            self.train(label, method, distribution)
            self.export(label)
            self.bench(label)
            rows.append(self.row(label, method, distribution))
            self.write(rows, started)
            print(f"[compare] {label}: done in {time.monotonic() - start:.0f} s", flush=True)
        print(f"[compare] table: {self.out / 'methods.md'}", flush=True)
        return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe TOML, e.g. models/mobilenet_v1.toml")
    parser.add_argument("--methods", default="gradual,static,set,rigl",
                        help="comma-separated: gradual, static, set, rigl, optionally -uniform/-erk "
                             "(default gradual,static,set,rigl)")
    parser.add_argument("--out", help="folder (default: reports/<recipe>-methods)")
    parser.add_argument("--epochs", type=int, action=cli.at_least(1), help="cap every phase at N epochs (all methods)")
    parser.add_argument("--max-train-examples", type=int, action=cli.at_least(1),
                        help="train every method on the first N training examples")
    cli.add_overrides(parser, "override a recipe value for every method (repeatable)")
    parser.add_argument("--skip-arm64", action="store_true", help="no emulated arm64 benchmark")
    cli.add_runs(parser, 10, "timed runs per model on arm64-emu")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    if not Path(args.recipe).is_file():
        raise UserError(f"no such recipe file: {args.recipe}")
    for s in args.set:
        if s.split("=", 1)[0].strip() in ("pruning.method", "pruning.distribution"):
            raise UserError(f"--set {s}: the comparison sets it per method; use --methods")
    comparison = Comparison(args)
    load_recipe(args.recipe, args.set)  # a bad recipe or --set fails here, before any training
    comparison.run()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
