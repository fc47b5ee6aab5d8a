"""`export/<name>/manifest.json`: what the export stage wrote, read by bench and report.

Schema (paths are relative to the manifest's folder)::

    {"model": "mobilenet_v1", "recipe": "models/mobilenet_v1.toml",
     "files": [{"path": "mobilenet_v1.sparse.fp32.tflite", "variant": "fp32",
                "dense": false, "runs": true, "error": null, "bytes": ..., "gzip_bytes": ...,
                "size_ratio_vs_dense": ..., "sparse_tensors": ..., "densify_ops": ...,
                "accuracy": ..., "parity": {"max_abs_diff": ..., "top1_agreement": ...},
                "xnnpack": {"sparse_clusters": ..., "verdict": ..., "reasons": [...]}}]}

Exactly one entry without a `role` has `"dense": true, "variant": "fp32"`: the dense baseline
every sparse file is compared against (a role's files have their own, see below).

As written by `python -m tfsparse.export` (see its docstring):
- `model` is the run folder's name (the recipe's name for a default run) and prefixes
  every file name: `<model>.dense.fp32.tflite`, `<model>.sparse.<variant>.tflite`.
  `recipe` is the recipe file the run was resolved from; `architecture` the zoo model.
- Top level also: `created` (UTC, ISO 8601), `tfsparse_version`, `test_examples`,
  `keras_accuracy: {"dense", "sparse"}` (the Keras models on the same test split) and
  `sparsity: {"overall", "layers": {name: zero fraction}, "target"}` of the pruned kernels.
- `accuracy` is LiteRT (default XNNPACK delegate) top-1 on the test split; `parity`
  compares with the sparse Keras model for sparse files and the dense one for the
  baseline; `size_ratio_vs_dense` = dense fp32 bytes / this file's bytes.
- `metric` is the recipe's `[train] metric`; top level `keras_score: {"dense", "sparse"}`
  and per file `score` use it (`accuracy`/`keras_accuracy` are null unless it is accuracy;
  `parity.top1_agreement` is null for regressions). Per file `extra` holds the data set's
  task metrics measured through LiteRT (e.g. FrozenLake's success rate). `output_layer`
  is set when only a sub-model (an autoencoder's encoder) was exported. `task_metric` names
  the task's real score: the `metric`, or a key of `extra` (FrozenLake: `success_rate`).
- `lookup_tables` (sparse files with a GATHER, e.g. an Embedding): per table `name`,
  `shape`, `zero_fraction`, `dense_bytes` and `sparse_bytes` as stored in the file (null
  when it stayed dense, under 30% zeros); see `tfsparse.exporting.sparse_lookup`.
- `role` (absent for the model itself): `"document_encoder"` marks a retrieval encoder's
  document side, `<model>.document.dense.fp32.tflite` (its own dense baseline) and
  `<model>.document.sparse.<variant>.tflite`: the same weights as the query files, input at
  the document length (`data.document_length`). An app that indexes its own documents
  encodes each one once with it into an inverted index; queries go through the query file at
  search time. Its `parity` is against the Keras model on the test documents, its `extra`
  the retrieval metrics with queries through the query file of the same variant and
  documents through this one (both LiteRT), and `size_ratio_vs_dense` is against its own
  dense baseline. Files without a role come first. `role_of(entry)`, `DOCUMENT_ROLE`.
- A file that failed to run has `"runs": false`, `error` = the runtime's message,
  `accuracy` and `parity` null, and lies under `failed/` (kept for inspection only).
"""

from __future__ import annotations

import json
from pathlib import Path

from tfsparse.errors import UserError

MANIFEST_NAME = "manifest.json"
DOCUMENT_ROLE = "document_encoder"


def role_of(entry: dict) -> str | None:
    """A file's `role`: None for the model itself, `DOCUMENT_ROLE` for a retrieval document encoder."""
    return entry.get("role")


def manifest_path(path: str | Path) -> Path:
    """The manifest for an export folder (or the manifest file itself)."""
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() else path


def load(path: str | Path) -> dict:
    """Reads and checks a manifest; raises UserError naming the file if unusable."""
    mp = manifest_path(path)
    try:
        manifest = json.loads(mp.read_text())
    except FileNotFoundError:
        raise UserError(f"no {MANIFEST_NAME} in {path} (run python -m tfsparse.export first)") from None
    except (OSError, ValueError) as e:
        raise UserError(f"unreadable manifest {mp}: {e}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise UserError(f"malformed manifest {mp}: no 'files' list")
    for entry in manifest["files"]:
        if not isinstance(entry, dict) or "path" not in entry or "dense" not in entry:
            raise UserError(f"malformed manifest {mp}: file entry {entry!r} lacks 'path' or 'dense'")
    return manifest


def files(path: str | Path, runnable_only: bool = True) -> list[Path]:
    """Absolute paths of the manifest's files (by default only those that ran at export)."""
    mp = manifest_path(path)
    manifest = load(mp)
    return [mp.parent / e["path"] for e in manifest["files"] if e.get("runs", True) or not runnable_only]


def dense_sparse_pairs(path: str | Path) -> list[tuple[Path, Path]]:
    """(dense baseline, sparse file) for every runnable sparse file in the manifest.

    The baseline is the dense file of the same role and variant when the export wrote one,
    else the dense fp32 file of the same role (a document encoder is never compared with the
    query encoder's baseline: their inputs differ).
    """
    mp = manifest_path(path)
    entries = [e for e in load(mp)["files"] if e.get("runs", True)]
    dense = {(role_of(e), e.get("variant")): e for e in entries if e["dense"]}
    pairs = []
    for e in entries:
        if e["dense"]:
            continue
        base = dense.get((role_of(e), e.get("variant"))) or dense.get((role_of(e), "fp32"))
        if base is not None:
            pairs.append((mp.parent / base["path"], mp.parent / e["path"]))
    return pairs


def task_metric(manifest: dict, default: str = "accuracy") -> str:
    """The task's real score: `task_metric` (a key of each file's `extra`, e.g. FrozenLake's
    success rate), else the recipe's training `metric`, else `default`."""
    return manifest.get("task_metric") or manifest.get("metric") or default


def file_score(entry: dict, metric: str) -> float | None:
    """One file's score in `metric`, measured through LiteRT at export (None: not measured;
    an encoder-only export has no reconstruction to score)."""
    extra = entry.get("extra") or {}
    value = extra.get(metric) if metric in extra else entry.get("score")
    return value if isinstance(value, (int, float)) else None
