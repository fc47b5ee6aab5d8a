"""The trade-off report of a pipeline run or a sparsity sweep, from the stages' JSON outputs.

    python -m tfsparse.report reports/mobilenet_v1              # regenerate a pipeline report
    python -m tfsparse.report reports/mobilenet_v1-sweep        # ... or a sweep's (has points/)
    python -m tfsparse.report --tasks reports/bbc_news reports/frozenlake reports/kws_ds_cnn \\
        reports/speech_autoencoder                              # one row per task (README table)

Reads only what the stages wrote: the run's `metrics.json` and `config.toml`, the export's
`manifest.json`, and the bench JSON of each target (`bench/host.json`,
`bench/arm64-emu.json`, `bench/android/results.json`). No TensorFlow, no model files.

Writes, each atomically, into the folder:
- `report.md`: one table in the style of the Fast Sparse ConvNets results (Elsen et al.,
  arXiv:1911.09723; github.com/google-research/google-research/tree/master/fastconvnets):
  model, accuracy, sparsity, which layers stay dense, size, gzip size, latency per target
  with its thread count, speedup over the same weights stored dense (the dense twin) and,
  except under emulation, over the unpruned dense file; then the plots.
- `results.csv` / `results.json`: the same rows, one per exported file.
- `accuracy_vs_sparsity.png`, `size_vs_sparsity.png`, `latency_vs_sparsity.png` (arm64-emu;
  host when arm64 was skipped): each sparse variant against sparsity, dense baseline marked.

A point (one pipeline run) is summarised in `results.json` as {"name", "target_sparsity",
"sparsity", "dense_layers", "benchmarks", "rows", "task"}; a sweep's report concatenates its
points. Scores are in the task's metric (`task_metric` of the export manifest: accuracy,
FrozenLake's success rate, an autoencoder's MSE), `-` where the files have none.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import tomllib
from pathlib import Path
from typing import Sequence

from tfsparse import atomic
from tfsparse.benchmarking.bench import EMULATED, SAME_WEIGHTS, UNPRUNED
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.exporting.manifest import file_score, role_of, task_metric
from tfsparse.reporting.export_table import format_pct, format_score, format_size, metric_label
from tfsparse.run_folder import RunFolder

PROG = "tfsparse.report"
TARGETS = ("host", "arm64-emu")  # bench JSON files: bench/<target>.json
ANDROID = "android"
LATENCY_FIELDS = ("threads", "median_ms", "twin_ms", "vs_twin", "vs_dense")
PLOTS = ("accuracy_vs_sparsity.png", "size_vs_sparsity.png", "latency_vs_sparsity.png")
GAP_PLOT = "generalisation_gap_vs_sparsity.png"
CSV_COLUMNS = ["point", "model", "file", "variant", "weights", "target_sparsity", "sparsity", "dense_layers",
               "accuracy", "metric", "score", "bytes", "gzip_bytes", "size_ratio_vs_dense", "xnnpack", "runs",
               "train_score", "train_test_gap"]


# ---- reading one point ------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no {what} at {path}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"unreadable {what} {path}: {e}") from None


def dense_layers(config_toml: Path) -> str:
    """Which layers the recipe's pruning policy leaves dense, in words (from the run's config.toml)."""
    try:
        pruning = tomllib.loads(config_toml.read_text()).get("pruning", {})
    except (OSError, tomllib.TOMLDecodeError):
        return "?"
    policy = pruning.get("policy", "xnnpack")
    # TF-MOT's PruneForLatencyOnXNNPack prunes 1x1 convolutions only: the 3x3 stem,
    # depthwise and classifier weights are not counted by XNNPACK's 2/3 rule anyway.
    text = {"xnnpack": "all but 1x1 convs", "all": "none"}.get(policy, f"not matching /{policy}/")
    if pruning.get("exclude"):
        text += f"; excluded /{pruning['exclude']}/"
    return text


def _bench_index(bench: dict) -> dict[str, dict]:
    """A bench report's results by file name (bench writes paths as given on its command line)."""
    return {Path(r["path"]).name: r for r in bench.get("results", []) if not r.get("twin_of")}


def _pairs(bench: dict, kind: str) -> dict[str, dict]:
    """A bench report's pairs of one baseline kind ("same_weights" or "unpruned_dense") by
    sparse file name. Reports written before twins existed paired only with the unpruned dense
    file and said nothing of the kind; under emulation those ratios are not speedups."""
    rows = {}
    for p in bench.get("pairs", []):
        if p.get("baseline_kind", UNPRUNED) == kind and not (kind == UNPRUNED and bench.get("target") in EMULATED):
            rows[Path(p["sparse"]).name] = p
    return rows


def _twin_ms(bench: dict) -> dict[str, float | None]:
    return {Path(r["twin_of"]).name: r.get("median_ms") for r in bench.get("results", []) if r.get("twin_of")}


def _android_rows(results: dict) -> tuple[dict, dict]:
    """Android results.json -> ({file: {threads: row}}, benchmark description)."""
    by_file: dict[str, dict[int, dict]] = {}
    for r in results.get("results", []):
        by_file.setdefault(Path(r["path"]).name, {})[int(r["threads"])] = r
    device = results.get("device", {})
    settings = results.get("settings", {})
    return by_file, {"threads": settings.get("threads"), "device": f"{device.get('model')} ({device.get('abi')})",
                     "note": "benchmark_model on the device, XNNPACK " + ("off" if settings.get("no_xnnpack") else "on")}


def task_summary(name: str, run_dir: Path, manifest: dict, metrics: dict, rows: list[dict]) -> dict:
    """One line of the tasks table: the dense fp32 vs sparse fp32 files' task score (LiteRT),
    or the Keras models' when the files have none, sizes and the sparse fp32 file's arm64-emu
    speedup over its dense twin (same weights)."""
    metric = task_metric(manifest, metrics.get("metric", "accuracy"))
    try:
        data = tomllib.loads(RunFolder(run_dir).config.read_text()).get("data", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        data = None
    dense = next((r for r in rows if r["weights"] == "dense" and r["variant"] == "fp32"), None)
    sparse = {r["variant"]: r for r in rows if r["weights"] == "sparse" and r["runs"]}
    fp32 = sparse.get("fp32")
    scores, measured = {"dense": None, "sparse": None}, "LiteRT fp32"
    if dense and fp32 and dense["score"] is not None and fp32["score"] is not None:
        scores = {"dense": dense["score"], "sparse": fp32["score"]}
    else:
        extra = metrics.get("extra") or {}
        for which in scores:
            value = (extra.get(which) or {}).get(metric, metrics.get(f"{which}_score"))
            scores[which] = value if isinstance(value, (int, float)) else None
        measured = "Keras" + (f"; the files: encoder to `{manifest['output_layer']}`" if manifest.get("output_layer") else "")
    arm64 = (fp32 or {}).get("latency", {}).get("arm64-emu") or {}
    host = (fp32 or {}).get("latency", {}).get("host") or {}
    return {"recipe": name, "data": data, "architecture": manifest.get("architecture"), "metric": metric,
            "measured": measured, **scores, "sparsity": (manifest.get("sparsity") or {}).get("overall"),
            "dense_bytes": dense["bytes"] if dense else None,
            "sparse_bytes": {variant: r["bytes"] for variant, r in sparse.items()},
            "xnnpack": (fp32 or {}).get("xnnpack"),
            "arm64_vs_twin": arm64.get("vs_twin"), "arm64_threads": arm64.get("threads"),
            "host_vs_dense": host.get("vs_dense")}


def collect_point(name: str, run_dir: Path, export_dir: Path, bench_dir: Path) -> dict:
    """One pipeline run as a results.json point: a row per exported file plus the bench settings."""
    # Without the run (a bare export folder) the rows still have everything but the recipe's target.
    run = RunFolder(run_dir)
    metrics = _read_json(run.metrics, "training metrics") if run.metrics.is_file() else {}
    manifest = _read_json(export_dir / "manifest.json", "export manifest")
    benches = {t: _read_json(bench_dir / f"{t}.json", f"{t} benchmark")
               for t in TARGETS if (bench_dir / f"{t}.json").is_file()}
    android = None
    if (bench_dir / ANDROID / "results.json").is_file():
        android = _android_rows(_read_json(bench_dir / ANDROID / "results.json", "android benchmark"))
    left_dense = dense_layers(run.config)
    sparsity = (manifest.get("sparsity") or {}).get("overall", metrics.get("overall_sparsity"))
    metric = task_metric(manifest, metrics.get("metric", "accuracy"))
    target = metrics.get("target_sparsity", (manifest.get("sparsity") or {}).get("target"))
    rows = []
    for entry in manifest["files"]:
        file = Path(entry["path"]).name
        row = {"point": name, "model": manifest.get("model", name), "file": file,
               "variant": entry.get("variant"),
               "weights": ("dense" if entry["dense"] else "sparse") + (", document encoder" if role_of(entry) else ""),
               "role": role_of(entry),  # a retrieval document encoder's row: listed, not plotted
               "target_sparsity": 0.0 if entry["dense"] else target,
               "sparsity": 0.0 if entry["dense"] else sparsity,
               "dense_layers": "all" if entry["dense"] else left_dense,
               "accuracy": entry.get("accuracy"), "metric": metric, "score": file_score(entry, metric),
               "bytes": entry.get("bytes"), "gzip_bytes": entry.get("gzip_bytes"),
               "size_ratio_vs_dense": entry.get("size_ratio_vs_dense"),
               "xnnpack": (entry.get("xnnpack") or {}).get("verdict"), "runs": entry.get("runs", True),
               "latency": {}}
        for target_name, bench in benches.items():
            result = _bench_index(bench).get(file)
            if result is not None:
                twin, unpruned = _pairs(bench, SAME_WEIGHTS).get(file, {}), _pairs(bench, UNPRUNED).get(file, {})
                row["latency"][target_name] = {
                    "threads": bench.get("threads"), "median_ms": result.get("median_ms"),
                    "twin_ms": _twin_ms(bench).get(file), "vs_twin": twin.get("speedup"),
                    "vs_dense": unpruned.get("speedup"), "error": result.get("error")}
        if android:
            for threads, r in sorted(android[0].get(file, {}).items()):
                row["latency"][f"{ANDROID}-t{threads}"] = {
                    "threads": threads, "median_ms": r.get("avg_ms"), "twin_ms": r.get("twin_avg_ms"),
                    "vs_twin": r.get("speedup_vs_twin"), "vs_dense": r.get("speedup_vs_dense"),
                    "error": r.get("error")}
        model_gen = (metrics.get("generalisation") or {}).get("dense" if entry["dense"] else "sparse") or {}
        row["train_score"], row["train_test_gap"] = model_gen.get("train"), model_gen.get("gap")
        rows.append(row)
    equal = (metrics.get("generalisation") or {}).get("dense_equal_epochs")
    if equal:  # the reference row: dense trained as long as dense + pruning (Keras; not exported)
        rows.append({"point": name, "model": manifest.get("model", name), "file": None, "variant": "-",
                     "weights": f"dense, {equal['epochs']} epochs (Keras)", "reference": True,
                     "target_sparsity": 0.0, "sparsity": 0.0, "dense_layers": "all", "accuracy": None,
                     "metric": metrics.get("metric", "accuracy"), "score": equal["test"], "bytes": None,
                     "gzip_bytes": None, "size_ratio_vs_dense": None, "xnnpack": None, "runs": True, "latency": {},
                     "train_score": equal["train"], "train_test_gap": equal["gap"]})
    described = {t: {k: b.get(k) for k in ("threads", "litert_version", "device", "note", "runs")}
                 for t, b in benches.items()}
    if android:
        described[ANDROID] = android[1]
    return {"name": name, "target_sparsity": target, "sparsity": sparsity, "dense_layers": left_dense,
            "metric": metrics.get("metric", "accuracy"),
            "keras": {"dense": metrics.get("dense_score"), "sparse": metrics.get("sparse_score")},
            "task": task_summary(name, run_dir, manifest, metrics, rows),
            "generalisation": metrics.get("generalisation"),
            # An [rl] run: every seed's dense and sparse score and the reference (tfsparse.training.rl).
            **({"rl": {k: v for k, v in metrics["rl"].items() if k != "agents"}} if metrics.get("rl") else {}),
            "benchmarks": described, "rows": rows}


# ---- plots ------------------------------------------------------------------------------


def _series(rows: list[dict], value, label) -> tuple[dict[str, list[tuple]], list[float]]:
    """({sparse variant: [(sparsity %, value, label)] sorted}, [dense baseline values])."""
    series: dict[str, list[tuple]] = {}
    dense = []
    for r in rows:
        v = value(r)
        if v is None or r.get("reference") or r.get("role"):
            continue
        if r["weights"] == "dense":
            dense.append(v)
        elif r["sparsity"] is not None:
            series.setdefault(r["variant"], []).append((100 * r["sparsity"], v, label(r) if label else None))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in series.items()}, dense


def _plot(path: Path, rows: list[dict], value, ylabel: str, title: str, note: str | None = None,
          label=None, from_zero: bool = False) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on CI or servers
    import matplotlib.pyplot as plt

    series, dense = _series(rows, value, label)
    if not series and not dense:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    labels = []
    for variant, points in series.items():
        xs, ys, _ = zip(*points)
        line, = ax.plot(xs, ys, marker="o", label=f"sparse {variant}")
        labels += [(x, y, text, line.get_color()) for x, y, text in points if text]
    if dense:
        # Several points share one dense baseline (a sweep re-measures it per point): show their mean.
        baseline = sum(dense) / len(dense)
        ax.axhline(baseline, color="black", linestyle="--", linewidth=1, label="dense fp32 baseline")
        ax.plot([0], [baseline], marker="*", markersize=12, color="black", linestyle="none")
    ax.set_xlabel("sparsity of the pruned layers (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xlim(-3, 100)
    if from_zero:  # sizes and latencies: the distance to zero is the point
        top = max([v for points in series.values() for _, v, _ in points] + dense)
        ax.set_ylim(0, 1.1 * top)
    _label_points(ax, labels)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if note:
        fig.text(0.01, 0.01, note, fontsize="x-small", color="dimgray")
    fig.tight_layout(rect=(0, 0.03 if note else 0, 1, 1))
    return _save_png(fig, path)


def _save_png(fig, path: Path) -> Path:
    """Writes a matplotlib figure atomically as PNG and closes it."""
    import matplotlib.pyplot as plt

    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _label_points(ax, labels: list[tuple]) -> None:
    """Writes each label left of its point; labels at one sparsity are pushed apart vertically
    (the variants of one point often lie within a few pixels of each other)."""
    low, high = ax.get_ylim()
    gap = 0.06 * (high - low)
    by_x: dict[float, list[tuple]] = {}
    for label in labels:
        by_x.setdefault(label[0], []).append(label)
    for x, group in by_x.items():
        previous = None
        for _, y, text, color in sorted(group, key=lambda g: g[1]):
            at = y if previous is None else max(y, previous + gap)
            ax.annotate(text, (x, at), xytext=(-8, 0), textcoords="offset points", ha="right", va="center",
                        fontsize="x-small", color=color)
            previous = at


def _rows_metric(rows: list[dict]) -> str:
    """The task metric the rows are scored in (every point of a report shares its recipe)."""
    return next((r["metric"] for r in rows if r.get("metric")), "accuracy")


def write_plots(out_dir: Path, rows: list[dict]) -> list[Path]:
    """Accuracy, size and latency against sparsity (the plots that have data)."""
    keys = _latency_keys(rows)
    target = "arm64-emu" if "arm64-emu" in keys else ("host" if "host" in keys else None)
    metric = _rows_metric(rows)
    percent = format_score(metric, 1.0).endswith("%")
    plots = [
        # The task's score (accuracy for classifiers; the file name stays for every task).
        _plot(out_dir / PLOTS[0], rows, lambda r: None if r.get("score") is None else (100 if percent else 1) * r["score"],
              f"test {metric_label(metric)}{' (%)' if percent else ''}",
              f"{metric_label(metric)[0].upper()}{metric_label(metric)[1:]} vs sparsity (LiteRT)"),
        _plot(out_dir / PLOTS[1], rows, lambda r: None if r["bytes"] is None else r["bytes"] / 1024,
              "file size (KiB)", "TFLite file size vs sparsity", from_zero=True,
              label=lambda r: f"{r['size_ratio_vs_dense']:.1f}x" if r.get("size_ratio_vs_dense") else None),
    ]
    if target:
        threads = _threads(rows, target)
        note = ("emulated arm64 (qemu): labels = speedup vs the same weights stored dense" if target == "arm64-emu" else
                "host x86: XNNPACK runs sparse files dense here (AVX); see arm64-emu for speed")
        plots.append(_plot(out_dir / PLOTS[2], rows, lambda r: (r["latency"].get(target) or {}).get("median_ms"),
                           f"median latency (ms, {threads} thread{'s' if threads != 1 else ''})",
                           f"{target} latency vs sparsity", note, from_zero=True,
                           label=lambda r: _ratio((r["latency"].get(target) or {}).get("vs_twin")).replace("-", "") or None))
    return [p for p in plots if p is not None]


def plot_gap(path: Path, points: list[dict]) -> Path | None:
    """Train-test gap of the sparse model against sparsity (one point per run, a sweep's line),
    the dense model's gap and the equally trained dense model's as baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sparse, dense, equal = [], [], []
    metric = "accuracy"
    for p in points:
        g = p.get("generalisation") or {}
        metric = g.get("metric") or p.get("metric") or metric
        if g.get("sparse") and p.get("sparsity") is not None:
            sparse.append((100 * p["sparsity"], g["sparse"]["gap"]))
        if g.get("dense"):
            dense.append(g["dense"]["gap"])
        if g.get("dense_equal_epochs"):
            equal.append(g["dense_equal_epochs"]["gap"])
    if not sparse:
        return None
    scale = 100 if format_score(metric, 1.0).endswith("%") else 1
    unit = " (points)" if scale == 100 else ""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    xs, ys = zip(*sorted(sparse))
    ax.plot(xs, [scale * y for y in ys], marker="o", label="sparse")
    for values, style, label in ((dense, "--", "dense"), (equal, ":", "dense, equal epochs")):
        if values:
            ax.axhline(scale * sum(values) / len(values), color="black", linestyle=style, linewidth=1, label=label)
    ax.set_xlabel("sparsity of the pruned layers (%)")
    ax.set_ylabel(f"train - test {metric_label(metric)}{unit}")
    ax.set_title("Generalisation gap vs sparsity (Keras)")
    ax.set_xlim(-3, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return _save_png(fig, path)


# ---- writing ------------------------------------------------------------------------------


def _latency_keys(rows: list[dict]) -> list[str]:
    keys = []
    for r in rows:
        for k in r["latency"]:
            if k not in keys:
                keys.append(k)
    order = {"host": 0, "arm64-emu": 1}
    return sorted(keys, key=lambda k: (order.get(k, 2), k))


def _threads(rows: list[dict], key: str):
    return next((r["latency"][key]["threads"] for r in rows if key in r["latency"]), "?")


def _ms(lat: dict | None) -> str:
    if not lat:
        return "-"
    if lat.get("median_ms") is None:
        return "fails" if lat.get("error") else "-"
    return f"{lat['median_ms']:.2f}" if lat["median_ms"] >= 1 else f"{lat['median_ms']:.3f}"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value else "-"


def latency_columns(key: str, threads) -> list[tuple[str, str]]:
    """(header, latency field) of one target's columns. Under emulation only the ratio against
    the dense twin (same weights) is a speedup: there an instruction's cost can depend on the values
    it computes with (software floating point), which a phone's does not (see tfsparse.benchmarking.bench)."""
    cols = [(f"{key} ms ({threads} thread{'s' if threads != 1 else ''})", "median_ms"),
            (f"{key} vs same weights", "vs_twin")]
    if key not in EMULATED:
        cols.append((f"{key} vs unpruned dense", "vs_dense"))
    return cols


def latency_cells(row: dict, key: str) -> list[str]:
    lat = row["latency"].get(key)
    cells = []
    for _, field in latency_columns(key, None):
        if field == "median_ms":
            cells.append(_ms(lat))
        else:
            dense = row["weights"].startswith("dense")  # the model's or a document encoder's baseline
            cells.append("baseline" if dense and lat and field == "vs_dense"
                         else ("-" if dense else _ratio((lat or {}).get(field))))
    return cells


def markdown_table(rows: list[dict]) -> str:
    keys = _latency_keys(rows)
    metric = _rows_metric(rows)
    gap = any(r.get("train_test_gap") is not None for r in rows)
    head = ["model", "variant", "weights", "sparsity", "left dense", metric_label(metric)]
    head += ["train-test gap (Keras)"] if gap else []
    head += ["size", "gzip size", "XNNPACK (arm64)"]
    for k in keys:
        head += [h for h, _ in latency_columns(k, _threads(rows, k))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["model"], str(r["variant"]), r["weights"], format_pct(r["sparsity"]), r["dense_layers"],
                 format_score(metric, r.get("score", r["accuracy"])) if r["runs"] else "fails to run"]
        cells += [format_gap(metric, r.get("train_test_gap"))] if gap else []
        cells += [format_size(r["bytes"]), format_size(r["gzip_bytes"]), r["xnnpack"] or "-"]
        for k in keys:
            cells += latency_cells(r, k)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def format_gap(metric: str, gap) -> str:
    """A train-test gap in points for a percentage metric, else in the metric's own unit."""
    if gap is None:
        return "-"
    if format_score(metric, 1.0).endswith("%"):
        return f"{100 * gap:+.2f} pts"
    return f"{gap:+.4g}"


def generalisation_lines(points: list[dict]) -> list[str]:
    """What the gap column means and, per point, sparse against the equally trained dense model."""
    lines = []
    for p in points:
        g = p.get("generalisation") or {}
        if not g.get("dense") or not g.get("sparse"):
            continue
        metric = g.get("metric") or p.get("metric") or "accuracy"
        split = g.get("train_split") or (g.get("split") or {}).get("train", "the training split")
        text = (f"- **{p['name']}** ({metric_label(metric)}, Keras; train = {split}): dense "
                f"{format_score(metric, g['dense']['train'])} train / {format_score(metric, g['dense']['test'])} test, "
                f"sparse {format_score(metric, g['sparse']['train'])} / {format_score(metric, g['sparse']['test'])}")
        equal = g.get("dense_equal_epochs")
        if equal:
            diff = g["sparse"]["test"] - equal["test"]
            text += (f", dense trained {equal['epochs']} epochs like the sparse model "
                     f"{format_score(metric, equal['train'])} / {format_score(metric, equal['test'])}: sparse vs "
                     f"equally trained dense {format_gap(metric, diff)} on test")
        lines.append(text + ".")
    if lines:
        if any((p.get("generalisation") or {}).get("dense_equal_epochs") for p in points):
            reference = ("the reference row is the dense model trained as many epochs as dense + pruning "
                         "(`[train] equal_epochs_dense`), the fair baseline for what pruning costs")
        else:  # e.g. `make demo`: without the reference the sparse model's extra epochs are not compensated
            reference = ("no equally trained dense reference here (`[train] equal_epochs_dense = true` adds it): "
                         "the sparse model also trained the pruning phase's epochs, so sparse vs dense is not "
                         "what pruning costs")
        lines = ["", "Generalisation: the *train-test gap* column is train minus test (test minus train for an "
                 f"error) of the Keras model each file was converted from; {reference}.", *lines]
    return lines


def agent_lines(point: dict | None) -> list[str]:
    """For an RL policy (`[rl]` recipe): how it was trained, how to act with it, and every seed's score."""
    rl = (point or {}).get("rl")
    if not rl:
        return []
    metric = rl["metric"]
    lines = ["## Agent", "",
             f"A {rl['algorithm']} agent trained by interaction with gymnasium `{rl['env']}` "
             f"(`{rl['env_kwargs']}`) for {rl['total_env_steps']} environment steps; it saw only observations, "
             f"its actions and the reward. The sparse agent was pruned *during* RL training (TF-MOT). "
             "To act: feed the observation (see Input), take the argmax of `q_values` (greedy policy).", "",
             f"{metric_label(metric)[0].upper()}{metric_label(metric)[1:]} of the greedy policy, {rl['eval']}, "
             "one dense and one sparse agent per training seed (these files are seed "
             f"{rl['seeds'][0]}'s):", "",
             "| agents | " + " | ".join(f"seed {s}" for s in rl["seeds"]) + " | mean ± std |",
             "|---|" + "---|" * (len(rl["seeds"]) + 1)]
    for variant in ("dense", "sparse"):
        summary = rl["summary"][variant]
        cells = [format_score(metric, summary["per_seed"][str(s)]) for s in rl["seeds"]]
        spread = (f"{format_score(metric, summary['mean'])} ± {100 * summary['std']:.1f} pts"
                  if format_score(metric, 1.0).endswith("%") else f"{summary['mean']:.4g} ± {summary['std']:.3g}")
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {spread} |")
    reference = rl.get("reference") or {}
    if reference.get(metric) is not None:
        lines += ["", f"Reference: {reference['policy']}, {format_score(metric, reference[metric])} on the same episodes."]
    seconds = {v: rl["summary"][v]["train_seconds_mean"] for v in ("dense", "sparse")}
    lines += ["", f"Training time per agent (mean over seeds): dense {seconds['dense']:.0f} s, sparse "
              f"{seconds['sparse']:.0f} s.", ""]
    return lines


def report_markdown(title: str, points: list[dict], plots: list[str]) -> str:
    rows = [r for p in points for r in p["rows"]]
    lines = [f"# {title}", "", markdown_table(rows)]
    metric = _rows_metric(rows)
    label = metric_label(metric)[0].upper() + metric_label(metric)[1:]
    # A task metric other than the training one is the data set's own evaluation (FrozenLake: episodes).
    where = ("the test split" if all(p.get("metric", metric) == metric for p in points)
             else "the task's own evaluation, described in the recipe")
    if any(p.get("rl") for p in points):
        where = "seeded evaluation episodes of the environment (greedy policy; see Agent below)"
    if all(r.get("score") is None for r in rows):  # a sub-model export (an autoencoder's encoder)
        measured = (f"{label}: not a property of these files (a sub-model); the Keras models' is in the "
                    "training run's metrics.json.")
    else:
        measured = (f"{label}: each file run by LiteRT (default XNNPACK delegate"
                    f"{'; top-1' if metric == 'accuracy' else ''}) on {where}.")
    lines.append(f"{measured} Sparsity: zero fraction "
                 "of the pruned kernels. Latency: median ms of interleaved runs. *vs same weights* = the file's "
                 "dense twin (the same weights, zeros included, stored dense; an int8 file's twin is int8) / "
                 "the file, median over the rounds of one run: what XNNPACK's sparse path gains. *vs unpruned "
                 "dense* = the dense fp32 file / the file (for int8 it includes what quantization alone gains): "
                 "shown for the host and a device only: under emulation (arm64-emu) an instruction's cost can "
                 "depend on the values it computes with (software floating point), so only the same weights are "
                 "a fair baseline there. On a phone, *vs unpruned dense* ~ *vs same weights*.")
    benches = {}
    for p in points:
        for target, b in p["benchmarks"].items():
            benches.setdefault(target, b)
    if benches:
        lines += ["", "Benchmarks:"]
        for target, b in benches.items():
            version = f", LiteRT {b['litert_version']}" if b.get("litert_version") else ""
            lines.append(f"- **{target}**: {b.get('threads')} thread(s){version}, {b.get('device')}. {b.get('note') or ''}")
    skips: dict[tuple[str, str], list[str]] = {}
    for p in points:
        for stage, why in (p.get("skipped") or {}).items():
            skips.setdefault((stage, why), []).append(p["name"])
    for (stage, why), names in skips.items():
        where = "" if len(names) == len(points) else f" ({', '.join(names)})"
        lines.append(f"- {stage} skipped{where}: {why}")
    for p in points:
        lines += [""] + agent_lines(p) if p.get("rl") else []
    lines += generalisation_lines(points)
    if plots:
        lines += [""] + [f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    keys = _latency_keys(rows)
    columns = CSV_COLUMNS + [f"{k}_{field}" for k in keys for field in LATENCY_FIELDS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        flat = {c: r.get(c) for c in CSV_COLUMNS}
        for k in keys:
            for field in LATENCY_FIELDS:
                flat[f"{k}_{field}"] = (r["latency"].get(k) or {}).get(field)
        writer.writerow({c: "" if v is None else v for c, v in flat.items()})
    return buf.getvalue()


def write(out_dir: Path, title: str, points: list[dict]) -> list[Path]:
    """report.md, results.csv, results.json and the plots; returns the written paths."""
    out_dir = Path(out_dir)
    rows = [r for p in points for r in p["rows"]]
    written = write_plots(out_dir, rows)
    gap_plot = plot_gap(out_dir / GAP_PLOT, points)
    if gap_plot:
        written.append(gap_plot)
    atomic.write_json(out_dir / "results.json", {"title": title, "points": points})
    atomic.write_text(out_dir / "results.csv", csv_text(rows))
    atomic.write_text(out_dir / "report.md", report_markdown(title, points, [p.name for p in written]))
    return [out_dir / "report.md", out_dir / "results.csv", out_dir / "results.json", *written]


def tasks_table(tasks: list[dict]) -> str:
    """One row per task (pipeline run): the table of the README's "Beyond images" section."""
    variants = []
    for t in tasks:
        variants += [v for v in t["sparse_bytes"] if v not in variants]
    threads = next((t["arm64_threads"] for t in tasks if t.get("arm64_threads")), 1)
    head = (["recipe", "data -> model", "metric (measured on)", "dense", "sparse", "sparsity", "TFLite dense fp32"]
            + [f"sparse {v}" for v in variants]
            + ["XNNPACK (arm64)", f"arm64-emu vs same weights (fp32, {threads} thread{'s' if threads != 1 else ''})"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for t in tasks:
        ratio = (lambda n: f"{format_size(n)} ({t['dense_bytes'] / n:.1f}x)" if n and t["dense_bytes"] else format_size(n))
        cells = [f"`{t['recipe']}`", f"{t['data']} -> {t['architecture']}", f"{metric_label(t['metric'])} ({t['measured']})",
                 format_score(t["metric"], t["dense"]), format_score(t["metric"], t["sparse"]), format_pct(t["sparsity"]),
                 format_size(t["dense_bytes"])] + [ratio(t["sparse_bytes"].get(v)) for v in variants]
        cells.append(t.get("xnnpack") or "-")
        cells.append(_ratio(t.get("arm64_vs_twin")))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _fresh_points(folder: Path) -> tuple[dict, list[dict]]:
    """(the folder's results.json, its points re-collected from the stages' outputs)."""
    if not (folder / "results.json").is_file():
        raise UserError(f"{folder}: no results.json (run python -m tfsparse.pipeline or tfsparse.pipeline.sweep first)")
    previous = _read_json(folder / "results.json", "results")
    points = []
    for p in previous.get("points", []):
        name = p["name"]
        base = folder / "points" / name if (folder / "points" / name).is_dir() else folder
        if (base / "export" / name).is_dir():  # a sweep point, or a pipeline run with --out
            stages = base / "runs" / name, base / "export" / name, base / "bench"
        else:  # the project's layout (pipeline without --out), run from the repository root
            stages = Path("runs") / name, Path("export") / name, folder / "bench"
        fresh = collect_point(name, *stages)
        fresh["skipped"] = p.get("skipped", {})
        points.append(fresh)
    return previous, points


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", metavar="folder",
                        help="a pipeline output folder (with results.json) or a sweep folder (with points/)")
    parser.add_argument("--tasks", action="store_true",
                        help="print one table row per folder's task (metric dense vs sparse, sparsity, sizes, "
                             "arm64-emu speedup over the dense twin) instead of rewriting each folder's report")
    parser.add_argument("--out", metavar="FILE", help="with --tasks: write the table here too (atomically)")
    args = parser.parse_args(argv)
    if args.out and not args.tasks:
        raise UserError("--out goes with --tasks (a folder's report is written into the folder)")
    if args.tasks:
        table = tasks_table([p["task"] for folder in args.folders for p in _fresh_points(Path(folder))[1]])
        if args.out:
            atomic.write_text(Path(args.out), table)
        print(table, end="")
        return 0
    for folder in map(Path, args.folders):
        previous, points = _fresh_points(folder)
        for path in write(folder, previous.get("title", folder.name), points):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
