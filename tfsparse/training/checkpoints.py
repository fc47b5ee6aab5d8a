"""Saving models during training: per-epoch checkpoints that `--resume` restarts from, and the
inference copy (weights and architecture, no optimizer) the export stage reads.
"""

from __future__ import annotations

import time
from pathlib import Path

import tensorflow as tf

from tfsparse import atomic

keras = tf.keras


def save_for_inference(model, path: Path):
    """Saves weights and architecture only (no optimizer state: a third of the size)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    with atomic.atomic_path(path) as tmp:
        copy.save(tmp)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model (with optimizer) atomically, then records the epoch in state."""

    def __init__(self, path: Path, state, phase: str):
        super().__init__()
        self.path, self.state, self.phase = path, state, phase
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        with atomic.atomic_path(self.path) as tmp:
            self.model.save(tmp)
        self.state.data["epochs_done"][self.phase] = epoch + 1
        self.state.data["seconds"][self.phase].append(round(seconds, 3))
        self.state.save()
