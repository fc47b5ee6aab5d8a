"""Offline data sets: nothing downloads at run time.

Each data set module provides `fetch()` (called by `python -m tfsparse.datasets
fetch`, which `make data` runs) and `load(...) -> Splits`. `load` never
downloads: missing data is a one-line error naming the fetch command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tfsparse.errors import unknown_name


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

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _registry():
    from tfsparse.datasets import bbc_news, fashion_mnist, frozenlake, speech_frames, speech_keywords
    from tfsparse.datasets import bbc_retrieval
    return {"fashion_mnist": fashion_mnist, "bbc_news": bbc_news, "frozenlake": frozenlake,
            "speech_keywords": speech_keywords, "speech_frames": speech_frames,
            "bbc_retrieval": bbc_retrieval}


def names() -> list[str]:
    return sorted(_registry())


def get(name: str):
    registry = _registry()
    if name not in registry:
        raise unknown_name("data set", name, registry)
    return registry[name]


def load(data_config, model_args: dict[str, Any], max_train_examples: int | None = None) -> Splits:
    """Loads the recipe's data set, shaped for the recipe's model."""
    module = get(data_config.name)
    splits = module.load(data_config, model_args)
    splits.full_train_examples = len(splits.x_train)
    if max_train_examples is not None:
        splits.x_train = splits.x_train[:max_train_examples]
        splits.y_train = splits.y_train[:max_train_examples]
    return splits
