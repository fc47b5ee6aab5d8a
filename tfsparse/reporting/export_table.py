"""The README table of an export folder, from its `manifest.json` (no TensorFlow needed).

    python -m tfsparse.report_export export/mobilenet_v1                 # markdown on stdout
    python -m tfsparse.report_export export/mobilenet_v1 --out export/mobilenet_v1/table.md
    python -m tfsparse.export --table export/mobilenet_v1                # the same

One row per file: model, variant, dense/sparse, size, gzip size, size ratio against the
dense fp32 baseline, LiteRT test score in the task's metric (accuracy for classifiers), top-1 agreement with Keras and the
inspector's XNNPACK verdict (what an arm64 phone would run). A file that failed to run
at export shows "fails to run" and the runtime's message under the table.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from tfsparse import atomic
from tfsparse.cli import ArgumentParser, run_main
from tfsparse.exporting import manifest as manifest_io

PROG = "tfsparse.report_export"
COLUMNS = ("model", "variant", "weights", "size", "gzip size", "vs dense fp32", "{metric}",
           "top-1 agreement", "XNNPACK (arm64)")


def format_size(n) -> str:
    """Bytes as KiB/MiB for tables; "-" when unknown."""
    if n is None:
        return "-"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def format_pct(x) -> str:
    """A fraction as a percentage with 2 decimals; "-" when unknown."""
    return "-" if x is None else f"{100 * x:.2f}%"


def metric_label(metric: str) -> str:
    """A metric's name for table headers and captions: "success rate", "MSE"."""
    if metric == "mrr_at_10":  # a retrieval encoder (tfsparse.datasets.retrieval_metrics)
        return "MRR@10"
    return metric.upper() if metric in ("mse", "mae") else metric.replace("_", " ")


def format_score(metric: str | None, value) -> str:
    """Fractions of correct answers (accuracy, success rate) as percentages; errors (mse, mae)
    with 4 significant digits; "-" when unknown."""
    if value is None:
        return "-"
    if metric and (metric.endswith("accuracy") or metric.endswith("rate")):
        return format_pct(value)
    return f"{value:.4g}"


def _verdict(entry: dict) -> str:
    x = entry.get("xnnpack") or {}
    verdict = x.get("verdict", "-")
    clusters = x.get("sparse_clusters")
    return f"{verdict} ({clusters} sparse cluster{'s' if clusters > 1 else ''})" if verdict == "sparse" and clusters else verdict


def rows(manifest: dict) -> list[list[str]]:
    metric = manifest_io.task_metric(manifest)
    out = []
    for e in manifest["files"]:
        ratio = e.get("size_ratio_vs_dense")
        runs = e.get("runs", True)
        out.append([
            str(manifest.get("model", "-")), str(e.get("variant", "-")),
            ("dense" if e["dense"] else "sparse") + (", document encoder" if manifest_io.role_of(e) else ""),
            format_size(e.get("bytes")), format_size(e.get("gzip_bytes")), "-" if ratio is None else f"{ratio:.2f}x",
            format_score(metric, manifest_io.file_score(e, metric)) if runs else "fails to run",
            format_pct((e.get("parity") or {}).get("top1_agreement")) if runs else "-",
            _verdict(e) if runs else "-",
        ])
    return out


def table(manifest: dict) -> str:
    """Markdown: the table, the Keras reference accuracies and any runtime failure."""
    metric = metric_label(manifest_io.task_metric(manifest))
    lines = ["| " + " | ".join(c.format(metric=metric) for c in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(manifest)]
    keras = manifest.get("keras_accuracy") or {}
    notes = []
    if keras:
        notes.append("Keras test accuracy: " + ", ".join(f"{k} {format_pct(v)}" for k, v in keras.items())
                     + f" ({manifest.get('test_examples', '?')} test examples; TFLite accuracy measured with "
                       "LiteRT's default XNNPACK delegate).")
    scores = manifest.get("keras_score") or {}
    if not keras and any(v is not None for v in scores.values()):
        metric = manifest.get("metric") or "score"
        notes.append(f"Keras test {metric}: " + ", ".join(f"{k} {format_score(metric, v)}" for k, v in scores.items())
                     + (f" (the files hold the sub-model up to `{manifest['output_layer']}`)"
                        if manifest.get("output_layer") else "") + ".")
    for e in manifest["files"]:
        for t in e.get("lookup_tables") or []:
            stored = (f"stored sparse: {format_size(t['dense_bytes'])} -> {format_size(t['sparse_bytes'])}"
                      if t.get("sparse_bytes") else "stored dense (under 30% zeros)")
            notes.append(f"`{e['path']}`: lookup table `{t['name']}` {t['shape']}, {format_pct(t['zero_fraction'])} "
                         f"zeros, {stored}.")
    sparsity = (manifest.get("sparsity") or {}).get("overall")
    if sparsity is not None:
        notes.append(f"Pruned layers are {format_pct(sparsity)} zero overall.")
    for e in manifest["files"]:
        if not e.get("runs", True):
            notes.append(f"`{e['path']}` fails to run: {e.get('error')}")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", help="export folder (or its manifest.json)")
    parser.add_argument("--out", help="write the table to this file (atomically) instead of stdout")
    args = parser.parse_args(argv)
    text = table(manifest_io.load(args.export_dir))
    if args.out:
        atomic.write_text(Path(args.out), text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
