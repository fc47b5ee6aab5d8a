"""What Keras is fed: the tf.data pipeline of a split (`batches`) and the same transform on numpy
(`scaled`), shared by the trainer, sparse-from-scratch runs and the exporter's checks.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def batches(x, y, batch_size: int, preprocessing: dict, shuffle: bool = False, seed: int = 0,
            shard: tuple[int, int] | None = None):
    """A tf.data pipeline; images stay uint8 in memory and are scaled per batch.

    `x` is a numpy array (built-in data sets) or a `tfsparse.datasets.streamed.StreamedSplit`
    (the user's files, read batch by batch; `y` is then its own labels). `shard` (a multi-worker
    run's `tfsparse.training.workers.input_shard`): this worker reads only its share of the files."""
    if hasattr(x, "dataset"):
        ds = x.dataset(batch_size, shuffle=shuffle, seed=seed, shard=shard)
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
    # Multi-worker training shards by element (each worker reads every n-th batch): file-based
    # sharding would need at least as many files as workers and does not apply to in-memory arrays.
    # (The user's files in a multi-worker run are sharded by key instead, before the decode, in a
    # pipeline per worker that tf.distribute does not auto-shard: tfsparse.training.workers.)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    if "scale" in preprocessing:
        # Arrays, not floats: a per-channel transform (moved out of a model by `tfsparse doctor`) broadcasts.
        scale = np.asarray(preprocessing["scale"], dtype=np.float32)
        offset = np.asarray(preprocessing.get("offset", 0.0), dtype=np.float32)
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32) * scale + offset, b), num_parallel_calls=tf.data.AUTOTUNE)
    # The user's files: a fixed read-ahead of 2 batches. AUTOTUNE grows the buffer while the
    # consumer waits (up to half the machine's RAM), so resident memory would follow the length
    # of the run and the size of the splits instead of the batch size.
    return ds.prefetch(2 if hasattr(x, "dataset") else tf.data.AUTOTUNE)


def scaled(x, preprocessing: dict):
    """The model input for stored examples `x` (numpy), as `batches` feeds it."""
    if "scale" not in preprocessing:
        return x
    return x.astype(np.float32) * np.float32(preprocessing["scale"]) + np.float32(preprocessing.get("offset", 0.0))
