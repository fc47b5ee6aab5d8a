"""`Splits`: what every data set module's `load(...)` returns, and what training and export read.

Defined in a module of its own so the data set modules import it without importing the package
(`tfsparse.datasets`, whose registry imports them); `tfsparse.datasets.Splits` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class Splits:
    """Fixed train / validation / test splits plus what an app needs to feed the model.

    `preprocessing` describes the app-side transform from raw input to model
    input (stored in the exported model's metadata), e.g. for images
    `{"scale": 1/255, "offset": 0.0, ...}` meaning `input = pixel * scale + offset`.
    Without `scale`, x is fed to the model as stored (features, token ids).
    `labels` may be empty for tasks that are not classification.
    """

    name: str
    labels: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: dict[str, Any] = field(default_factory=dict)
    full_train_examples: int = 0  # before --max-train-examples trimmed x_train
    # Task-specific evaluation beyond the recipe's metric (e.g. an RL policy's
    # success rate): called with a `predict(x) -> outputs` function for the dense
    # and sparse models (Keras at train time, TFLite at export time).
    extra_metrics: Callable[[Callable], dict] | None = None
    # The `extra_metrics` key that is the task's real score (FrozenLake: "success_rate"), shown
    # in reports instead of the recipe's training metric; None: the training metric is.
    task_metric: str | None = None
    # The user's data (`image_folder`, `audio_folder`, `text_csv`, `arrays`): where it came from,
    # its classes, examples per split and every file that could not be read (counted, named,
    # skipped). Goes into metrics.json as `data`. See `tfsparse.datasets.streamed`.
    data_report: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.labels)
