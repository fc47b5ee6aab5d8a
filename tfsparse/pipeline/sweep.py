"""Sparsity sweep: one pipeline run per sparsity level, one shared dense baseline, one report.

    python -m tfsparse.sweep models/mobilenet_v1.toml --sparsity 0.5,0.75,0.9,0.95
    python -m tfsparse.sweep models/mobilenet_v1.toml --sparsity 0.5,0.9 --quick --out reports/smoke-sweep
    python -m tfsparse.sweep models/mobilenet_v1.toml --sparsity 0.5,0.75,0.9,0.95   # again: resumes

Layout under `--out` (default `reports/<recipe>-sweep`):

    points/<recipe>-sp50/   a complete `python -m tfsparse.pipeline` folder per point
                            (runs/, export/<recipe>-sp50/ with its model card, bench/, report)
    sweep.log.jsonl         one line per point started, finished or skipped (with the time)
    report.md, results.csv, results.json, accuracy/size/latency_vs_sparsity.png

The dense model is trained once, by the first point; every other point prunes a copy of
that `dense.keras` (`python -m tfsparse.train --from`), so the points differ only in the
pruning target and the dense baseline in every row is the same network. Each point sets
`pruning.final_sparsity`; the rest of the recipe (and `--set`) is shared.

A sparse-from-scratch recipe (`pruning.method = "static" | "set" | "rigl"`,
`tfsparse.training.from_scratch`) has no dense phase to share: every point trains its own
network sparse from the first step (`dense_epochs + epochs` epochs, from scratch), and each
point's dense row is that point's own weights stored dense (the export baseline of such a
run), not one shared network. The sweep says so when it starts and in the report's title.

Resumable: a point is finished once its `pipeline.json` says so (written atomically, last);
a finished point is skipped, an unfinished one resumes stage by stage. The sweep report is
rewritten after every point, so an interrupted sweep still shows the points it finished.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Sequence

from tfsparse import cli
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.pipeline import runner as pipeline
from tfsparse.recipe import load_recipe
from tfsparse.reporting import report
from tfsparse.run_folder import RunFolder

PROG = "tfsparse.sweep"
LOG_NAME = "sweep.log.jsonl"


def parse_sparsities(text: str) -> list[float]:
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise UserError(f"--sparsity: {part!r} is not a number (use fractions, e.g. 0.5,0.75,0.9)") from None
        if not 0.0 < value < 1.0:
            raise UserError(f"--sparsity: {part} is outside (0, 1) (use fractions, e.g. 0.9 for 90%)")
        values.append(value)
    if not values:
        raise UserError("--sparsity: empty list")
    return list(dict.fromkeys(values))


def point_name(stem: str, sparsity: float) -> str:
    """`mobilenet_v1-sp90` for 0.9, `-sp97.5` for 0.975: readable, sortable, unique per value."""
    return f"{stem}-sp{round(100 * sparsity, 4):g}"


def is_finished(point_dir: Path) -> bool:
    try:
        return bool(json.loads((point_dir / pipeline.STATE_NAME).read_text()).get("finished"))
    except (OSError, ValueError):
        return False


def log(out: Path, point: str, event: str) -> None:
    """Appends one JSON line; a line is small enough to be written whole."""
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    with open(out / LOG_NAME, "a") as f:
        f.write(json.dumps({"time": stamp, "point": point, "event": event}) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe TOML, e.g. models/mobilenet_v1.toml")
    parser.add_argument("--sparsity", required=True, help="comma-separated pruning targets, e.g. 0.5,0.75,0.9,0.95")
    parser.add_argument("--out", help="sweep folder (default: reports/<recipe>-sweep)")
    parser.add_argument("--quick", action="store_true", help="smoke size for every point (see tfsparse.pipeline.runner)")
    cli.add_overrides(parser, "override a recipe value for every point (repeatable)")
    parser.add_argument("--skip-arm64", action="store_true", help="no emulated arm64 benchmark")
    cli.add_runs(parser, None, "timed runs per model in each benchmark (default 10, --quick 3)")
    parser.add_argument("--arm64-variants", metavar="LIST", help="sparse variants timed under arm64 emulation")
    args = parser.parse_args(argv)
    if not Path(args.recipe).is_file():
        raise UserError(f"no such recipe file: {args.recipe}")
    if any(s.split("=", 1)[0].strip() == "pruning.final_sparsity" for s in args.set):
        raise UserError("--set pruning.final_sparsity: the sweep sets it per point; use --sparsity")
    sparsities = parse_sparsities(args.sparsity)
    # The recipe as every point resolves it (overrides included): its pruning method decides
    # whether the points can share the first point's dense model.
    method = load_recipe(args.recipe, [*args.set, f"pruning.final_sparsity={sparsities[0]}"]).pruning.method
    from_scratch = method != "gradual"
    stem = Path(args.recipe).stem
    out = Path(args.out or Path("reports") / f"{stem}-sweep")
    out.mkdir(parents=True, exist_ok=True)

    names = [point_name(stem, s) for s in sparsities]
    # The first point trains the dense model; the others prune its dense.keras.
    shared_dense = RunFolder(out / "points" / names[0] / "runs" / names[0]).dense_model
    if from_scratch:
        print(f"[sweep] pruning.method = {method!r} trains sparse from the first step: there is no dense phase "
              f"to share, so each of the {len(names)} points trains from scratch, and each point's dense row is "
              "its own sparse weights stored dense", flush=True)
    points = []
    for i, (sparsity, name) in enumerate(zip(sparsities, names)):
        point_dir = out / "points" / name
        if is_finished(point_dir):
            print(f"[sweep] {name}: finished earlier, skipped", flush=True)
            log(out, name, "skipped")
        else:
            print(f"[sweep] {name}: pruning.final_sparsity={sparsity} ({i + 1}/{len(names)})", flush=True)
            log(out, name, "started")
            point_argv = [args.recipe, "--out", str(point_dir), "--name", name,
                          *sum((["--set", s] for s in args.set), []), "--set", f"pruning.final_sparsity={sparsity}"]
            point_argv += ["--quick"] if args.quick else []
            point_argv += ["--skip-arm64"] if args.skip_arm64 else []
            point_argv += ["--runs", str(args.runs)] if args.runs else []
            point_argv += ["--arm64-variants", args.arm64_variants] if args.arm64_variants else []
            if i > 0 and not from_scratch:
                point_argv += ["--from", str(shared_dense)]
            rc = pipeline.main(point_argv)
            if rc != 0:
                log(out, name, "failed")
                raise UserError(f"point {name} failed (output above); run the same command again to resume it")
            log(out, name, "finished")
        points.append(json.loads((point_dir / "results.json").read_text())["points"][0])
        title = f"{stem}: sparsity sweep" + (f" (pruning.method = {method!r}: every point trained sparse from "
                                             "scratch, no shared dense model)" if from_scratch else "")
        written = report.write(out, title + (" (--quick smoke run, not a result)" if args.quick else ""), points)
    print(f"[sweep] {len(points)} point(s); report: {written[0]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
