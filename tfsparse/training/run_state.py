"""`state.json` of a training run: which phase it is in and how many epochs each finished.

The trainer updates it at the end of every epoch (after the checkpoint), so a run killed
at any point resumes where it stopped; the pipeline reads it to know whether training is
done. No TensorFlow here.

    from tfsparse.training.run_state import RunState
    state = RunState(Path("runs/mobilenet_v1"))
    state.finished("pruning"), state.epochs_done("dense")
"""

from __future__ import annotations

import json
from pathlib import Path

from tfsparse import atomic, run_folder

STATE = run_folder.STATE
PHASES = ("dense", "pruning")


class RunState:
    """`state.json`: which phase the run is in and how many epochs each finished."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / STATE
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {
            "epochs_done": {p: 0 for p in PHASES}, "seconds": {p: [] for p in PHASES}, "done": [],
        }

    def save(self):
        atomic.write_json(self.path, self.data)

    def epochs_done(self, phase: str) -> int:
        return self.data["epochs_done"][phase]

    def finished(self, phase: str) -> bool:
        return phase in self.data["done"]

    def mark_finished(self, phase: str, **values):
        self.data["done"].append(phase)
        self.data.update(values)
        self.save()
