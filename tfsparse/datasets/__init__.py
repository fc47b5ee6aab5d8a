"""Offline data sets: nothing downloads at run time.

Each data set module provides `fetch()` (called by `python -m tfsparse.datasets
fetch`, which `make data` runs) and `load(...) -> Splits`. `load` never
downloads: missing data is a one-line error naming the fetch command.

The user's own data (`image_folder`, `audio_folder`, `text_csv`, `arrays`) has nothing to
fetch; its splits are `streamed.StreamedSplit`s read with tf.data, not arrays in memory.
"""

from __future__ import annotations

from typing import Any

from tfsparse.datasets.splits import Splits
from tfsparse.errors import UserError, unknown_name

__all__ = ["Splits", "names", "get", "load", "load_for"]


def _registry():
    from tfsparse.datasets import bbc_news, fashion_mnist, frozenlake, speech_frames, speech_keywords
    from tfsparse.datasets import bbc_retrieval
    from tfsparse.datasets import arrays, audio_folder, image_folder, text_csv
    return {"fashion_mnist": fashion_mnist, "bbc_news": bbc_news, "frozenlake": frozenlake,
            "speech_keywords": speech_keywords, "speech_frames": speech_frames,
            "bbc_retrieval": bbc_retrieval,
            # The user's own data, streamed with tf.data (tfsparse.datasets.streamed).
            "image_folder": image_folder, "audio_folder": audio_folder, "text_csv": text_csv, "arrays": arrays}


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
    wanted = model_args.get("num_classes")
    if splits.data_report is not None and wanted is not None and splits.labels and wanted != len(splits.labels):
        raise UserError(f"model.num_classes = {wanted}, but the data has {len(splits.labels)} classes "
                        f"({', '.join(map(str, splits.labels[:10]))}{', ...' if len(splits.labels) > 10 else ''})")
    splits.full_train_examples = len(splits.x_train)
    if max_train_examples is not None:
        splits.x_train = splits.x_train[:max_train_examples]
        splits.y_train = splits.y_train[:max_train_examples]
    return splits


def load_for(recipe, max_train_examples: int | None = None) -> Splits:
    """The recipe's data: its `[data]` set, or for an `[rl]` recipe the environment's probe
    observations and evaluation episodes (`tfsparse.datasets.gym_env.load_rl`)."""
    if getattr(recipe, "rl", None) is not None:
        from tfsparse.datasets.gym_env import load_rl
        return load_rl(recipe)
    return load(recipe.data, recipe.model.args, max_train_examples)
