"""Which zero pattern makes XNNPACK fastest: unstructured vs output-channel blocks vs 2:4.

    python -m tfsparse.structure_study models/mobilenet_v1.toml --epochs 2 --max-train-examples 8192
    python -m tfsparse.structure_study models/mobilenet_v1.toml --sparsities 0.8,0.9 --bench-sizes 32,96
    python -m tfsparse.structure_study models/mobilenet_v1.toml --patterns unstructured,block4 --out study/quick
    python -m tfsparse.structure_study --micro --out study/micro      # the SpMM kernels alone, no training

For each pattern (`unstructured`, `block2` = blocks of 2 output channels, `block4`,
`2:4` = TF-MOT's `sparsity_m_by_n`, always 50%) and each sparsity, runs the real
pipeline: `python -m tfsparse.train` (the dense phase once; every other run starts
`--from` that dense model, so all share one baseline), `python -m tfsparse.export`
(fp32; LiteRT accuracy, inspector verdict), then times every sparse file against the
one dense baseline in a single interleaved arm64-emu run (`tfsparse.benchmarking.bench`).

The input size changes no weight of these fully convolutional models (global average
pooling then Dense), so `--bench-sizes` can also time each trained model rebuilt at a
phone-like resolution: the same zeros, more pixels per SpMM (XNNPACK's sparse kernels
tile 32 pixels; at 32x32 input the last stage is 1x1 pixel).

Writes `OUT/study.json` and `OUT/study.md` (the table; accuracies are from the short
training asked for, stated in the table's caption).

`--micro` isolates XNNPACK's SpMM kernels: a stem (56x56 input) and four 1x1 convolutions
at 28x28 with random weights, 90% zero in each pattern (same non-zero count), timed
against the dense twin; no training, no data.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

from tfsparse import atomic, cli
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.exporting import manifest
from tfsparse.exporting.converter import convert as convert_model

PATTERNS = {
    "unstructured": [],
    "block2": ["pruning.block_size=[1, 2]"],
    "block4": ["pruning.block_size=[1, 4]"],
    "2:4": ["pruning.sparsity_m_by_n=[2, 4]"],
}
LABELS = {"unstructured": "unstructured", "block2": "block 1x2 (2 out ch)", "block4": "block 1x4 (4 out ch)",
          "2:4": "2:4 (N:M)"}
M_BY_N_SPARSITY = 0.5  # TF-MOT's (2, 4): 2 zeros in every 4 weights, whatever the schedule says


def parse_args(argv):
    parser = ArgumentParser(prog="python -m tfsparse.structure_study", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", help="recipe TOML, e.g. models/mobilenet_v1.toml")
    parser.add_argument("--micro", action="store_true", help="time the SpMM kernels on a synthetic model instead")
    parser.add_argument("--out", help="study folder (default: study/<recipe name>)")
    parser.add_argument("--patterns", default=",".join(PATTERNS), help=f"comma-separated from {','.join(PATTERNS)}")
    parser.add_argument("--sparsities", default="0.9", help="comma-separated final sparsities (2:4 is always 0.5)")
    parser.add_argument("--epochs", type=int, default=2, help="cap every training phase (default 2)")
    parser.add_argument("--max-train-examples", type=int, default=8192)
    parser.add_argument("--bench-sizes", default="", help="extra input sizes to time the trained weights at, e.g. 96")
    parser.add_argument("--target", choices=("arm64-emu", "host"), default="arm64-emu")
    cli.add_runs(parser, 10)
    cli.add_overrides(parser, "recipe override applied to every run (repeatable)")
    args = parser.parse_args(argv)
    if not args.recipe and not args.micro:
        parser.error("a recipe is required (or --micro)")
    args.patterns = [p.strip() for p in args.patterns.split(",") if p.strip()]
    for p in args.patterns:
        if p not in PATTERNS:
            parser.error(f"--patterns: unknown pattern {p!r} (known: {', '.join(PATTERNS)})")
    try:
        args.sparsities = [float(s) for s in args.sparsities.split(",") if s.strip()]
        args.bench_sizes = [int(s) for s in args.bench_sizes.split(",") if s.strip()]
    except ValueError as e:
        parser.error(f"--sparsities/--bench-sizes: {e}")
    if not args.sparsities or not all(0 < s < 1 for s in args.sparsities):
        parser.error(f"--sparsities must be in (0, 1), got {args.sparsities}")
    if any(s < 8 for s in args.bench_sizes) or args.epochs < 1 or args.max_train_examples < 1 or args.runs < 1:
        parser.error("--bench-sizes >= 8, --epochs, --max-train-examples and --runs >= 1")
    return args


def plan(patterns: list[str], sparsities: list[float]) -> list[dict]:
    """The runs: every pattern at every sparsity, except 2:4 which has only its own 50%."""
    runs = []
    for pattern in patterns:
        for s in ([M_BY_N_SPARSITY] if pattern == "2:4" else sparsities):
            name = f"{pattern.replace(':', 'of')}_{round(s * 100)}"
            runs.append({"name": name, "pattern": pattern, "sparsity": s,
                         "set": [*PATTERNS[pattern], f"pruning.final_sparsity={s}"]})
    return runs


def _run(command: str, args: list[str], log: Path) -> None:
    """Runs the stage `tfsparse <command> args` in this process (as the pipeline does), its
    output going to `log`."""
    import contextlib

    from tfsparse.errors import TfsparseError, one_line
    from tfsparse.pipeline.runner import run_stage

    print(f"$ tfsparse {command} " + " ".join(args), flush=True)
    start = time.perf_counter()
    with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            rc = run_stage(command, args)
        except TfsparseError as e:
            print(f"error: {one_line(e)}", file=f)
            rc = 2
    if rc != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        raise UserError(f"{command} failed (exit {rc}, log {log}): {' | '.join(tail)}")
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)


def train_and_export(args, run: dict, out: Path, dense_from: Path | None) -> dict:
    run_dir, export_dir = out / "runs" / run["name"], out / "export" / run["name"]
    if not (run_dir / "metrics.json").exists():
        cmd = [args.recipe, "--out", str(run_dir), "--quiet",
               "--epochs", str(args.epochs), "--max-train-examples", str(args.max_train_examples)]
        cmd += ["--resume"] if (run_dir / "state.json").exists() else []
        cmd += ["--from", str(dense_from)] if dense_from else []
        for s in [*args.set, *run["set"]]:
            cmd += ["--set", s]
        _run("train", cmd, out / "logs" / f"train_{run['name']}.log")
    if not (export_dir / manifest.MANIFEST_NAME).exists():
        _run("export", [str(run_dir), "--variants", "fp32", "--out", str(export_dir)],
             out / "logs" / f"export_{run['name']}.log")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    man = manifest.load(export_dir)
    sparse = next(f for f in man["files"] if not f["dense"] and f["variant"] == "fp32")
    dense = next(f for f in man["files"] if f["dense"])
    return {**run, "run_dir": str(run_dir), "export_dir": str(export_dir),
            "dense_file": str(export_dir / dense["path"]), "sparse_file": str(export_dir / sparse["path"]),
            "dense_accuracy": metrics.get("dense_score"), "sparse_accuracy": metrics.get("sparse_score"),
            "litert_sparse_accuracy": sparse["accuracy"], "overall_sparsity": metrics["overall_sparsity"],
            "xnnpack_verdict": sparse["xnnpack"]["verdict"], "sparse_bytes": sparse["bytes"],
            "dense_bytes": dense["bytes"]}


def structure(row: dict) -> dict:
    """What the inspector finds in the exported sparse file, and the SpMM width XNNPACK will pick.

    XNNPACK's choice (`create_spmm_path`): 4 output channels if the non-zero aligned
    4-channel groups are >= 90% full, else 2 at the same bar, else 1.
    """
    import numpy as np

    from tfsparse.pruning.block import block_fill
    from tfsparse.tflite.inspector import inspect_file

    report = inspect_file(row["sparse_file"])
    blocks = Counter(t["block_structure"]["output_channel_block"] for t in report["sparse_tensors"])
    n_m = Counter(t["block_structure"]["n_m"] for t in report["sparse_tensors"])
    # Which SpMM kernel each pruned 1x1 layer gets, from the trained weights.
    import tensorflow as tf

    model = tf.keras.models.load_model(Path(row["run_dir"]) / "sparse.keras", compile=False)
    names = json.loads((Path(row["run_dir"]) / "state.json").read_text())["pruned_layers"]
    widths = Counter()
    for name in names:
        kernel = model.get_layer(name).kernel.numpy()
        out_in = np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
        widths[next((b for b in (4, 2) if block_fill(out_in, b) >= 0.9), 1)] += 1
    return {"inspector_output_channel_blocks": dict(sorted(blocks.items())),
            "inspector_n_m": {str(k): v for k, v in n_m.items()},
            "xnnpack_spmm_width": {str(k): v for k, v in sorted(widths.items())}}


def twins(rows: list[dict], recipe, size: int, out: Path) -> tuple[Path, list[Path]]:
    """The dense and each sparse model rebuilt at `size` x `size` with the trained weights, as fp32 .tflite."""
    import tensorflow as tf

    from tfsparse.zoo import create_model

    folder = out / f"bench_{size}"
    folder.mkdir(parents=True, exist_ok=True)

    def convert(keras_path: Path, target: Path, sparse: bool) -> Path:
        if target.exists():
            return target
        trained = tf.keras.models.load_model(keras_path, compile=False)
        args = {**recipe.model.args, "input_size": size, "num_classes": trained.output_shape[-1]}
        model = create_model(recipe.model.name, **args)
        model.set_weights(trained.get_weights())
        atomic.write_bytes(target, convert_model(model, "fp32", sparse=sparse))
        return target

    dense = convert(Path(rows[0]["run_dir"]) / "dense.keras", folder / "dense.fp32.tflite", False)
    sparse = [convert(Path(r["run_dir"]) / "sparse.keras", folder / f"{r['name']}.sparse.fp32.tflite", True)
              for r in rows]
    return dense, sparse


def bench(args, dense: Path, sparse: list[Path]) -> dict:
    """One interleaved run: the dense baseline, every sparse file and (made by tfsparse.benchmarking.bench) each
    sparse file's dense twin; the speedup of a sparse file is over its twin (same weights)."""
    from tfsparse.benchmarking import arm64
    from tfsparse.benchmarking import bench as bench_mod

    if args.target == "host":
        runner, version = bench_mod.host_runner(), arm64.host_litert_version()
    else:
        runtime = arm64.provision(None)
        runner, version = bench_mod.Runner(runtime.argv(), runtime.env()), runtime.litert_version
    rep = bench_mod.measure([dense, *sparse], [(dense, s) for s in sparse], args.target, runner, version,
                            threads=1, warmup=2, runs=args.runs, timeout=300.0)
    print(bench_mod.format_table(rep), flush=True)
    return rep


def _pair(rep: dict, sparse: str) -> tuple[float | None, float | None, float | None]:
    """(dense twin ms, sparse ms, speedup over the twin) of one sparse file. Under emulation only the
    twin is a fair baseline: see tfsparse.benchmarking.bench."""
    from tfsparse.benchmarking.bench import SAME_WEIGHTS

    by_path = {r["path"]: r for r in rep["results"]}
    pair = next(p for p in rep["pairs"] if p["sparse"] == sparse and p["baseline_kind"] == SAME_WEIGHTS)
    return by_path[pair["baseline"]]["median_ms"], by_path[sparse]["median_ms"], pair["speedup"]


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(study: dict) -> str:
    sizes = study["bench_sizes"]
    head = ["pattern", "target sparsity", "1x1 zeros", "dense acc", "sparse acc (LiteRT)", "XNNPACK verdict",
            "SpMM width (layers)"] + [h for s in sizes for h in (f"twin ms @{s}", f"sparse ms @{s}",
                                                               f"vs same weights @{s}")]
    lines = [f"Training: {study['training']}. Timing: {study['timing']}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in study["rows"]:
        cells = [LABELS[r["pattern"]], f"{r['sparsity']:.2f}", f"{r['overall_sparsity']:.3f}",
                 _fmt(r["dense_accuracy"], ".4f"), _fmt(r["litert_sparse_accuracy"], ".4f"), r["xnnpack_verdict"],
                 (", ".join(f"{w}: {n}" for w, n in r["xnnpack_spmm_width"].items())
                  if r["xnnpack_verdict"] == "sparse" else "none (dense GEMM)")]
        for s in sizes:
            d, sp, x = r["bench"][str(s)]
            cells += [_fmt(d, ".2f"), _fmt(sp, ".2f"), _fmt(x, ".2f") + ("x" if x else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def micro(args, out: Path) -> dict:
    """Dense vs unstructured vs 2- and 4-channel blocks, 90% zero, on one synthetic SpMM-heavy model."""
    import numpy as np
    import tensorflow as tf

    layers = tf.keras.layers
    rng = np.random.default_rng(0)
    inputs = tf.keras.Input((56, 56, 3))
    x = layers.ZeroPadding2D(1)(inputs)
    x = layers.Conv2D(64, 3, strides=2, activation="relu")(x)  # the start node XNNPACK requires
    x = layers.Conv2D(256, 1, activation="relu")(x)
    for _ in range(3):
        x = layers.Conv2D(256, 1, activation="relu")(x)
    model = tf.keras.Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))
    dense_weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.05 for w in model.weights]

    def masked(block: int):
        weights = [w.copy() for w in dense_weights]
        for layer in model.layers:
            if isinstance(layer, layers.Conv2D) and layer.kernel_size == (1, 1):
                i = next(j for j, w in enumerate(model.weights) if w is layer.kernel)
                k = weights[i].reshape(layer.kernel.shape[2], -1, block)  # (in, out groups, block)
                keep = rng.permutation(k.shape[0] * k.shape[1]) < round(0.1 * k.shape[0] * k.shape[1])
                k *= keep.reshape(k.shape[0], k.shape[1], 1)
        return weights

    files = {}
    for name, weights, sparse in (("dense", dense_weights, False), ("unstructured_90", masked(1), True),
                                  ("block2_90", masked(2), True), ("block4_90", masked(4), True)):
        model.set_weights(weights)
        files[name] = atomic.write_bytes(out / f"micro.{name}.tflite", convert_model(model, "fp32", sparse=sparse))
    rep = bench(args, files["dense"], [files[n] for n in files if n != "dense"])
    rows = [{"pattern": n, "median_ms": _pair(rep, str(files[n]))[1], "speedup": _pair(rep, str(files[n]))[2]}
            for n in files if n != "dense"]
    dense_ms = rep["results"][0]["median_ms"]  # the dense-weights file, timed first
    md = ["Synthetic: stem 3->64 (3x3 s2) + 1x1 64->256 + 3 x 1x1 256->256 at 28x28, random weights, "
          f"90% zero per pattern. {rep['target']}, LiteRT {rep['litert_version']}, 1 thread, median of "
          f"{args.runs} interleaved runs. Dense: {_fmt(dense_ms, '.1f')} ms.", "",
          "| pattern | sparse ms | vs same weights (its dense twin) |", "|---|---|---|"]
    md += [f"| {r['pattern']} | {_fmt(r['median_ms'], '.1f')} | {_fmt(r['speedup'], '.2f')}x |" for r in rows]
    result = {"rows": rows, "dense_ms": dense_ms, "bench_report": rep}
    atomic.write_json(out / "micro.json", result)
    atomic.write_text(out / "micro.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from tfsparse.recipe import load_recipe

    if args.micro:
        out = Path(args.out or "study/micro")
        out.mkdir(parents=True, exist_ok=True)
        micro(args, out)
        return 0

    recipe = load_recipe(args.recipe, args.set)
    out = Path(args.out or Path("study") / Path(args.recipe).stem)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    runs = plan(args.patterns, args.sparsities)
    rows, dense_from = [], None
    for run in runs:
        rows.append(train_and_export(args, run, out, dense_from))
        dense_from = dense_from or Path(rows[0]["run_dir"]) / "dense.keras"
    for row in rows:
        row.update(structure(row))
    size = int(recipe.model.args.get("input_size", 224))
    sizes = [size, *[s for s in args.bench_sizes if s != size]]
    reports = {}
    for s in sizes:
        if s == size:  # the exported files themselves (one dense baseline: all runs share it)
            dense, sparse = Path(rows[0]["dense_file"]), [Path(r["sparse_file"]) for r in rows]
        else:
            dense, sparse = twins(rows, recipe, s, out)
        print(f"timing {len(sparse)} sparse files against {dense} at {s}x{s} on {args.target}", flush=True)
        reports[str(s)] = bench(args, dense, sparse)
        for row, path in zip(rows, sparse):
            row.setdefault("bench", {})[str(s)] = _pair(reports[str(s)], str(path))
    study = {"recipe": args.recipe, "overrides": args.set, "bench_sizes": sizes, "rows": rows,
             "training": f"{args.epochs} epochs per phase on {args.max_train_examples} training examples "
                         f"({recipe.data.name}, {recipe.model.name} {recipe.model.args}"
                         f"{', --set ' + ' '.join(args.set) if args.set else ''}); all runs prune the same "
                         f"dense model; accuracies are from this short run",
             "timing": f"{args.target}, LiteRT {next(iter(reports.values()))['litert_version']}, 1 thread, "
                       f"median of {args.runs} interleaved runs, fp32; @N = input NxN (same weights)",
             "bench_reports": reports}
    atomic.write_json(out / "study.json", study)
    atomic.write_text(out / "study.md", table(study))
    print(table(study))
    return 0


if __name__ == "__main__":
    sys.exit(run_main("tfsparse.structure_study", main))
