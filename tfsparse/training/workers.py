"""A multi-worker run on the user's files: each worker reads and decodes only its share.

`--strategy multi-worker` (`tf.distribute.MultiWorkerMirroredStrategy`) runs the same command
on every worker. For in-memory arrays tf.distribute's DATA auto-sharding is fine (every worker
holds the arrays anyway), but for the user's files (`tfsparse.datasets.streamed`) it would make
every worker read and decode *every* file, then keep only its own batches. So the trainer builds
each worker's pipeline itself with `strategy.distribute_datasets_from_function`, as
tf.distribute's input guide describes (https://www.tensorflow.org/tutorials/distribute/input,
"tf.distribute.Strategy.distribute_datasets_from_function"): the function gets an
`InputContext`, and worker `input_pipeline_id` of `num_input_pipelines` keeps keys (file paths)
`i, i + n, i + 2n, ...` (`tf.data.Dataset.shard(n, i)`) *before* the decode, batched by the
per-replica batch size. The shares are disjoint and together cover the split.

Keras takes such a distributed dataset with explicit step counts and does not restart it per
epoch (`tf.keras.utils.experimental.DatasetCreator`'s contract), so the training stream repeats
and an epoch is `ceil(examples / batch_size)` global steps, as with one worker (each worker's
pass over its share, batched per replica; when the shares need different numbers of batches, a
worker short of one takes it from its next pass); evaluation makes
one pass of `eval_steps` steps, and a worker whose share ends first gets empty batches until the
others finish (tf.distribute's partial-batch handling in multi-worker mode), so every example is
evaluated exactly once.

    shard = input_shard(strategy)              # (2, 1) on the second of two workers, else None
    shares(128, shard)                         # [64, 64]: what each worker reads
"""

from __future__ import annotations

import math
from pathlib import Path

from tfsparse.errors import UserError


def input_shard(strategy) -> tuple[int, int] | None:
    """(number of input pipelines, this worker's index) of a multi-worker strategy; None otherwise.

    The same numbers as the `InputContext` tf.distribute gives the dataset function
    (`multi_worker_util.id_in_cluster`: the chief is 0, the workers come after it); known here
    before any dataset is built, for the progress line and metrics.json.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None
    cluster = resolver.cluster_spec().as_dict()
    chiefs = len(cluster.get("chief", []))
    n = chiefs + len(cluster.get("worker", []))
    if n < 2 or resolver.task_type not in ("chief", "worker"):
        return None
    index = 0 if resolver.task_type == "chief" else chiefs + int(resolver.task_id)
    return n, index


def shares(examples: int, shard: tuple[int, int] | None) -> list[int]:
    """How many of `examples` keys each worker reads under `Dataset.shard(n, i)` (element i, i + n, ...)."""
    if shard is None:
        return [examples]
    n = shard[0]
    return [len(range(i, examples, n)) for i in range(n)]


def per_replica_batch(strategy, batch_size: int, what: str = "train.batch_size") -> int:
    """The batch each replica gets so that a global step takes `batch_size` examples."""
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size % replicas:
        raise UserError(f"{what} = {batch_size} does not split evenly over {replicas} replicas "
                        f"(multi-worker on streamed data): use a multiple of {replicas}")
    return batch_size // replicas


def eval_steps(strategy, shard: tuple[int, int], examples: int, batch_size: int) -> int:
    """Global steps of one evaluation pass: enough for the largest share (others get empty batches)."""
    per_replica = per_replica_batch(strategy, batch_size, "evaluation batch")
    local_replicas = int(strategy.num_replicas_in_sync) // shard[0]
    return max(1, max(math.ceil(math.ceil(s / per_replica) / local_replicas) for s in shares(examples, shard)))


def distribute(strategy, shard: tuple[int, int], make_batches, batch_size: int, *, repeat: bool):
    """`make_batches(per_replica_batch, (n, i))` -> this worker's tf.data pipeline, distributed.

    `repeat` for training (Keras keeps one iterator for all epochs of a distributed dataset).
    """
    import tensorflow as tf

    per_replica = per_replica_batch(strategy, batch_size)

    def dataset_fn(context):
        pipeline = (context.num_input_pipelines, context.input_pipeline_id)
        if pipeline != shard:  # the progress line and metrics.json would misreport the shares
            raise RuntimeError(f"tf.distribute input pipeline {pipeline} is not the expected {shard}")
        ds = make_batches(per_replica, pipeline)
        return ds.repeat() if repeat else ds

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(dataset_fn, options)


def copy_chief_run(chief_dir: Path, run_dir: Path) -> None:
    """Seeds a non-chief worker's temporary run folder with the chief's, for `--resume`.

    Only the chief writes the run folder; the other workers write theirs to a temporary folder
    that is removed at the end. In synchronous training every worker holds the same weights and
    optimizer state at an epoch's end, so resuming every worker from the chief's `state.json` and
    checkpoints puts them at the same epoch and step, as the collective ops need. The chief's
    folder must be on a file system all workers share (at the same `--out` path).
    """
    import shutil

    shutil.copytree(chief_dir, run_dir, ignore=shutil.ignore_patterns("logs", ".*.tmp*"))


def describe(shard: tuple[int, int], sizes: dict[str, int]) -> str:
    """The progress line of one worker: its index and what it reads of each split."""
    n, i = shard
    parts = ", ".join(f"{shares(size, shard)[i]} of {size} {split}" for split, size in sizes.items())
    return f"worker {i + 1} of {n} reads only its share: {parts} examples (files or rows)"
