"""A training run's folder: what `tfsparse train` writes and export, report and the pipeline read.

Defined here once, so that no stage spells a file name of another stage's output:

    runs/<name>/
        config.toml     the resolved recipe (first line: "# resolved recipe of <path>"); --resume reads it
        state.json      which phase is done and how many epochs each finished (tfsparse.training.run_state)
        checkpoints/    per-epoch checkpoints of the phase in progress
                        (+ sparse_state.e<N>.npz: masks and random state of a static/SET/RigL run)
        logs/dense, logs/pruning   TensorBoard event files (loss, metric, per-layer sparsity)
        dense.keras     the trained dense model
        sparse.keras    the pruned model, TF-MOT wrappers stripped: what export converts
        dense_equal.keras  the dense model trained as many epochs as the sparse one ([train] equal_epochs_dense)
        metrics.json    scores, sparsity per layer, epochs, seconds, strategy (written last)

    >>> run = RunFolder("runs/mobilenet_v1")
    >>> run.sparse_model
    PosixPath('runs/mobilenet_v1/sparse.keras')

No TensorFlow here: bench and report read run folders on machines without it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.toml"
STATE = "state.json"
METRICS = "metrics.json"
DENSE_MODEL = "dense.keras"
SPARSE_MODEL = "sparse.keras"
DENSE_EQUAL_MODEL = "dense_equal.keras"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
# What `config.toml`'s first line says: the recipe file the run was resolved from.
ORIGIN_PREFIX = "# resolved recipe of "


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is read or created by building one)."""

    path: Path

    def __init__(self, path: str | os.PathLike):
        object.__setattr__(self, "path", Path(path))

    @property
    def name(self) -> str:
        """The run's name: the folder's own name (abspath, not resolve: a symlinked
        runs/<name> -> runs/<name>_try2 keeps the name the user gave it)."""
        return Path(os.path.abspath(self.path)).name

    config = property(lambda self: self.path / CONFIG, doc="the resolved recipe")
    state = property(lambda self: self.path / STATE, doc="phase progress (training.run_state)")
    metrics = property(lambda self: self.path / METRICS, doc="the run's results, written last")
    dense_model = property(lambda self: self.path / DENSE_MODEL, doc="the trained dense model")
    sparse_model = property(lambda self: self.path / SPARSE_MODEL, doc="the pruned, stripped model")
    checkpoints = property(lambda self: self.path / CHECKPOINTS, doc="per-epoch checkpoints")

    def logs(self, phase: str) -> Path:
        """TensorBoard folder of a phase ("dense" or "pruning")."""
        return self.path / LOGS / phase

    def origin(self) -> str:
        """The recipe file this run was resolved from ("" when config.toml does not say)."""
        try:
            first = self.config.read_text().splitlines()[:1]
        except OSError:
            return ""
        return first[0].removeprefix(ORIGIN_PREFIX).strip() if first and first[0].startswith(ORIGIN_PREFIX) else ""

    def read_metrics(self) -> dict:
        """metrics.json, or {} when the run has not finished (or the file is unreadable)."""
        try:
            return json.loads(self.metrics.read_text())
        except (OSError, ValueError):
            return {}

    def finished(self) -> bool:
        """Both phases done and metrics.json written after the last state change."""
        try:
            done = json.loads(self.state.read_text()).get("done", [])
        except (OSError, ValueError):
            return False
        return ("pruning" in done and self.metrics.is_file()
                and self.metrics.stat().st_mtime >= self.state.stat().st_mtime)
