"""Splits read from the user's files as `tf.data` pipelines: never the whole set in memory.

The built-in data sets hold each split as a numpy array. A user's data set may not fit in RAM,
so the `[data]` kinds `image_folder`, `audio_folder`, `text_csv` and `arrays` give `Splits`
a `StreamedSplit` as `x_train` / `x_val` / `x_test` instead: a list of *keys* (file paths,
row indices) and their labels, plus a `decode` that turns a key into one example inside the
tf.data graph. The trainer asks it for batches (`dataset(batch_size, shuffle=...)`): keys are
shuffled (cheap: strings or integers), decoded in parallel, optionally cached to disk
(`[data] cache`), augmented (training split only), batched and prefetched by the caller. The
resident memory is the shuffle of keys plus a few batches, whatever the number of examples.

The same object also acts like a read-only array where the rest of the pipeline expects one,
so export and the model card keep working unchanged:

- `len(split)`, `split.shape`, `split.dtype`;
- `split[a:b]` / `split[index_array]` -> a smaller `StreamedSplit` (no reading);
- `np.asarray(split)` reads and decodes the examples. Export does this for the test split (its
  LiteRT accuracy runs on it) and for the `[export] representative_examples` int8 calibration
  examples: the test split must fit in memory, the training split never has to.

    >>> split = ImageFolderSplit(np.array(["a/cat/1.png"]), np.array([0], np.int32), size=(32, 32))
    >>> ds = split.dataset(batch_size=32, shuffle=True)       # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tfsparse.paths import cache_dir

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow here
MAX_LISTED = 50  # unreadable files named one by one in metrics.json; the count is always complete


class StreamedSplit:
    """One split as keys + labels; subclasses define `decode(key) -> example` as TF ops.

    `element_shape` / `element_dtype` describe one decoded example (what the model sees before
    `Splits.preprocessing`'s scale/offset). `augment` (training split only) is a function of one
    example applied after the cache. `cache` is a folder (or None): decoded examples are cached
    there by `tf.data.Dataset.cache`, one file per split, named by a hash of its keys and the
    decode settings, so a changed data set never reads a stale cache.
    """

    element_shape: tuple = ()
    element_dtype: Any = np.uint8

    def __init__(self, keys: np.ndarray, labels: np.ndarray, *, cache: str | None = None,
                 shuffle_buffer: int = 1024, augment=None, name: str = "split"):
        self.keys, self.labels = np.asarray(keys), np.asarray(labels, np.int32)
        self.cache, self.shuffle_buffer, self.augment, self.name = cache, shuffle_buffer, augment, name

    # ---- the array-like face ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    @property
    def shape(self) -> tuple:
        return (len(self), *self.element_shape)

    @property
    def dtype(self):
        return np.dtype(self.element_dtype)

    def __getitem__(self, index) -> "StreamedSplit":
        if isinstance(index, (int, np.integer)):
            index = slice(index, index + 1)
        subset = copy.copy(self)
        subset.keys, subset.labels = self.keys[index], self.labels[index]
        return subset

    def __array__(self, dtype=None, copy=None):
        parts = [x for x, _ in self.dataset(256).as_numpy_iterator()]
        out = np.concatenate(parts) if parts else np.zeros((0, *self.element_shape), self.element_dtype)
        return out.astype(dtype) if dtype is not None else out

    # ---- the tf.data face ---------------------------------------------------------------------
    def decode(self, key):
        """One key (a scalar tensor) -> one example (a tensor of `element_shape`)."""
        raise NotImplementedError

    def settings(self) -> dict:
        """What besides the keys decides the decoded examples (names the cache file)."""
        return {}

    def cache_file(self, shard: tuple[int, int] | None = None, keys=None) -> str:
        """The cache of these keys in this order (`keys`: the order the dataset reads them in)."""
        keys = self.keys if keys is None else keys
        digest = hashlib.sha256()
        # The shard is part of the name: a cache written as worker 1 of 2 holds half the split,
        # and must not be replayed by a run with another number of workers.
        digest.update(json.dumps([type(self).__name__, self.settings(), str(keys.dtype)]
                                 + ([list(shard)] if shard else []), sort_keys=True, default=str).encode())
        digest.update(np.ascontiguousarray(keys).tobytes())
        # Workers of a multi-worker run share a file system: one cache file each (tf.data refuses
        # two writers of one cache).
        worker = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
        suffix = f"-{worker.get('type', 'worker')}{worker.get('index', 0)}" if worker else ""
        Path(self.cache).mkdir(parents=True, exist_ok=True)
        return str(Path(self.cache) / f"{self.name}-{digest.hexdigest()[:16]}{suffix}")

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, shard: tuple[int, int] | None = None):
        """Batches of (examples, labels), read from the files as they are needed.

        `shard = (n, i)`: only keys i, i + n, ... (a worker's share of a multi-worker run,
        `tfsparse.training.workers`), taken before the decode so the other files are never read.
        """
        import tensorflow as tf

        keys, labels = self.keys, self.labels
        if shard is not None:  # keys i, i + n, ... (what Dataset.shard(n, i) takes), before any decode
            keys, labels = keys[shard[1]::shard[0]], labels[shard[1]::shard[0]]
        if shuffle and self.cache:
            # The cache replays the order it was written in, and folders list their files class by
            # class: a bounded shuffle buffer over that order would hold one or two classes at a
            # time (training then chases the class of the moment). Mix the keys once, seeded, first.
            order = np.random.default_rng(seed).permutation(len(keys))
            keys, labels = keys[order], labels[order]
        ds = tf.data.Dataset.from_tensor_slices((keys, labels))
        if shuffle and not self.cache:
            # Keys are tiny: a full shuffle of them costs nothing and mixes the whole set.
            ds = ds.shuffle(max(1, len(self)), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda k, y: (self.decode(k), y), num_parallel_calls=AUTOTUNE, deterministic=not shuffle)
        if self.cache:
            ds = ds.cache(self.cache_file(shard, keys))
            if shuffle:  # the cache replays one order: shuffle decoded examples in a bounded buffer
                ds = ds.shuffle(min(self.shuffle_buffer, max(1, len(self))), seed=seed, reshuffle_each_iteration=True)
        if shuffle and self.augment is not None:
            ds = ds.map(lambda x, y: (self.augment(x), y), num_parallel_calls=AUTOTUNE)
        return ds.batch(batch_size)


def unreadable_report(kind: str, path: str, problems: list[tuple[str, str]], **extra) -> dict:
    """What `Splits.data_report` holds: counts per split, class names and every unreadable file
    (the first MAX_LISTED by name, all of them counted); it goes into metrics.json as `data`."""
    return {"kind": kind, "path": path, **extra, "unreadable": len(problems),
            "unreadable_files": [{"path": p, "reason": r} for p, r in problems[:MAX_LISTED]]}


def data_cache(cache) -> str | None:
    """`[data] cache`: false/absent -> no cache; true -> tfsparse's cache folder; a string -> that folder."""
    if cache in (None, False):
        return None
    if cache is True:
        return str(cache_dir("data-cache"))
    return str(Path(cache).expanduser())


def describe(report: dict) -> str:
    """The progress line for the user's data: classes, split sizes, unreadable files by name."""
    examples = report.get("examples", {})
    sizes = " / ".join(f"{s} {n}" for s, n in examples.items())
    line = f"{report['kind']} {report['path']}: {len(report.get('classes', []))} classes, {sizes} examples"
    if report.get("ignored_files"):
        line += f"; {report['ignored_files']} non-data files ignored"
    if "checked_now" in report:
        files = sum(examples.values()) + report["unreadable"]
        line += f"; {report['checked_now']} of {files} files decoded to check them"
        if report["checked_now"] < files:
            line += " (the rest unchanged since an earlier open)"
    if report["unreadable"]:
        named = "; ".join(f"{f['path']}: {f['reason']}" for f in report["unreadable_files"][:5])
        more = report["unreadable"] - min(5, len(report["unreadable_files"]))
        line += (f"; {report['unreadable']} unreadable file(s) skipped (listed in metrics.json 'data'): {named}"
                 + (f"; and {more} more" if more > 0 else ""))
    return line
