"""Train a recipe: dense training, then TF-MOT pruning fine-tune.

    python -m tfsparse.train models/mobilenet_v1.toml
    python -m tfsparse.train models/mobilenet_v1.toml --epochs 1 --max-train-examples 512 --out runs/smoke
    python -m tfsparse.train models/mobilenet_v1.toml --resume          # after Ctrl-C or a crash
    python -m tfsparse.train models/mobilenet_v1.toml --set pruning.final_sparsity=0.8 --out runs/mnv1_80
    python -m tfsparse.train models/mobilenet_v1.toml --from my_dense.keras --one-shot magnitude
    tensorboard --logdir runs/mobilenet_v1/logs

Writes into the run folder (default `runs/<recipe>`): `config.toml` (the resolved
recipe), `dense.keras`, `sparse.keras` (masks stripped), `metrics.json`, `logs/`
(TensorBoard, with TF-MOT's per-layer sparsity) and `checkpoints/` (one per
epoch, for `--resume`). `metrics.json` holds the dense and sparse scores, overall
and per-layer sparsity, the schedule, epochs, seconds per epoch, and `strategy`
(the tf.distribute class the run trained under, e.g. `MirroredStrategy`;
`DefaultDistributionStrategy` without `--strategy`) with `replicas` (its
`num_replicas_in_sync`); after `--resume`, those of the invocation that finished.

Multi-worker training: set `TF_CONFIG` on every worker as described in
https://www.tensorflow.org/tutorials/distribute/multi_worker_with_keras and pass
`--strategy multi-worker`; each worker runs this same command. On the user's files each worker
reads and decodes only its share (tfsparse.training.workers).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tfsparse import atomic, cli, run_folder
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.recipe import Recipe, load_recipe
from tfsparse.run_folder import RunFolder
from tfsparse.training.run_state import PHASES, STATE, RunState  # noqa: F401  (PHASES: this module's API before)

RUN_OPTIONS = ("epochs", "max_train_examples", "from_model", "one_shot")  # kept for --resume


def parse_args(argv):
    parser = ArgumentParser(prog="python -m tfsparse.train", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe TOML, e.g. models/mobilenet_v1.toml")
    parser.add_argument("--out", help="run folder (default: runs/<recipe name>)")
    parser.add_argument("--epochs", type=int, action=cli.at_least(1),
                        help="cap every phase (dense, pruning, fine-tune) at N epochs")
    parser.add_argument("--max-train-examples", type=int, action=cli.at_least(1),
                        help="use only the first N training examples")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--from", dest="from_model", help="start from this trained dense model (tf_keras .keras/.h5/SavedModel, or Keras 3 .keras/.h5): "
                             "[model] from without the dense phase")
    parser.add_argument("--one-shot", choices=("magnitude", "random"),
                        help="prune in one step to final_sparsity, then fine-tune [train] finetune_epochs")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multi-worker"), default="default")
    cli.add_overrides(parser)
    cli.add_quiet(parser)
    return parser.parse_args(argv)


def make_strategy(name: str):
    """The distribution strategy; must be created before any other TensorFlow op.

    On a machine without GPUs, `mirrored` splits the CPU into
    `TFSPARSE_LOGICAL_CPUS` (default 2) logical devices, one replica each — how
    the test suite exercises MirroredStrategy's gradient all-reduce on CI.
    """
    import tensorflow as tf

    if name == "mirrored":
        if not tf.config.list_physical_devices("GPU"):
            n = int(os.environ.get("TFSPARSE_LOGICAL_CPUS", "2"))
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
            return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise UserError("--strategy multi-worker needs TF_CONFIG set on every worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def run(recipe, run_dir, *, resume: bool = False, overrides=(), epochs: int | None = None,
        max_train_examples: int | None = None, from_model: str | None = None, one_shot: str | None = None,
        strategy: str = "default", verbose: bool = True, log=lambda line: print(line, flush=True)) -> dict:
    """Trains `recipe` (a path or a `Recipe`) into `run_dir`; returns the run's metrics.json.

    `resume=True` continues the run in `run_dir` with its own config.toml and the options it
    was started with (options given here override them). Raises UserError before writing
    anything when the input is wrong. `log` gets the "resuming" line (the trainer prints its
    per-epoch lines when `verbose`).
    """
    run_dir = Path(run_dir)
    recipe_path = str(recipe.source or recipe.name) if isinstance(recipe, Recipe) else str(recipe)
    options = {"epochs": epochs, "max_train_examples": max_train_examples, "from_model": from_model,
               "one_shot": one_shot}
    if run_dir.exists() and not run_dir.is_dir() or run_dir.is_symlink() and not run_dir.exists():
        raise UserError(f"--out {run_dir}: exists and is not a folder (or is a dangling link)")
    if resume:
        if not (run_dir / STATE).is_file():
            shared = " (with --strategy multi-worker every worker must see the chief's run folder there)" \
                if strategy == "multi-worker" else ""
            raise UserError(f"--resume: no run to resume in {run_dir} (no {STATE}){shared}")
        # The run continues as it was started: same resolved recipe, same options.
        name = recipe.name if isinstance(recipe, Recipe) else Path(recipe).stem
        recipe = load_recipe(RunFolder(run_dir).config, overrides)
        recipe.name = name
        saved = json.loads((run_dir / STATE).read_text()).get("options", {})
        for key in RUN_OPTIONS:
            if options[key] is None:
                options[key] = saved.get(key)
        log(f"resuming {run_dir} with its config.toml")
    else:
        if not isinstance(recipe, Recipe):
            recipe = load_recipe(recipe, overrides)
        elif overrides:
            raise UserError("overrides apply to a recipe file; change the Recipe object instead")
        if (run_dir / STATE).exists():
            raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, or --out for a new one")
    if options["from_model"] and not Path(options["from_model"]).exists():
        raise UserError(f"--from: no such model file: {options['from_model']}")
    if recipe.model.from_path and not Path(recipe.model.from_path).exists():
        raise UserError(f"model.from: no such model file: {recipe.model.from_path}")
    if options["one_shot"] and (recipe.pruning.sparsity_m_by_n or (recipe.pruning.block_size or [1, 1]) != [1, 1]):
        raise UserError("--one-shot prunes unstructured; unset pruning.sparsity_m_by_n / pruning.block_size")

    if recipe.pruning.method != "gradual":
        for option, value in (("--from", options["from_model"]), ("--one-shot", options["one_shot"]),
                              ("--strategy", None if strategy == "default" else strategy)):
            if value:
                raise UserError(f"{option} is not supported with pruning.method = {recipe.pruning.method!r} "
                                "(sparse from the first step; only with gradual)")

    strategy = make_strategy(strategy)
    # Everything below imports TensorFlow; all input checks that need it (data
    # present, model buildable, policy accepts it) still run before any output.
    from tfsparse import datasets
    from tfsparse.training.trainer import Trainer

    splits = datasets.load_for(recipe, options["max_train_examples"])
    if splits.data_report is not None:
        from tfsparse.datasets.streamed import describe

        log(describe(splits.data_report))
    # Multi-worker: every worker runs this same code (saving and evaluating are collective), but
    # only the chief writes the run folder; the others write to a temporary folder, removed at
    # the end (TensorFlow's multi-worker Keras tutorial does the same).
    scratch = _worker_scratch(strategy)
    if scratch is not None:
        chief_dir, run_dir = run_dir, Path(scratch.name) / run_dir.name
        if resume:  # continue from the chief's checkpoints: the same weights, optimizer and epoch count
            from tfsparse.training import workers

            workers.copy_chief_run(chief_dir, run_dir)
    elif resume:  # one process, or a multi-worker run's chief: the run folder is its own
        for stale in run_dir.rglob(".*.tmp*"):  # a temporary the kill left behind
            stale.unlink()
    if recipe.rl is not None:  # an agent trained by interaction (tfsparse.training.rl)
        from tfsparse.training.rl import RLTrainer
        # --max-train-examples caps each agent's environment steps; --epochs does not apply.
        trainer = RLTrainer(recipe, splits, run_dir, strategy, max_steps=options["max_train_examples"],
                            verbose=verbose)
    else:
        trainer = Trainer(recipe, splits, run_dir, strategy, epochs_cap=options["epochs"], verbose=verbose, log=log)
    trainer.validate(from_model=options["from_model"])

    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        atomic.write_text(RunFolder(run_dir).config, f"{run_folder.ORIGIN_PREFIX}{recipe_path}\n" + recipe.to_toml())
    state = RunState(run_dir)
    state.data["options"] = options
    state.save()
    try:
        return trainer.run(state, from_model=options["from_model"], one_shot=options["one_shot"])
    finally:
        if scratch is not None:
            scratch.cleanup()


def _worker_scratch(strategy):
    """A temporary folder for a multi-worker run's non-chief worker, None for the chief or one worker."""
    import tempfile

    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None
    cluster = resolver.cluster_spec().as_dict()
    chief = resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                              and "chief" not in cluster)
    return None if chief else tempfile.TemporaryDirectory(prefix=f"tfsparse-{resolver.task_type}{resolver.task_id}-")


def main(argv=None):
    args = parse_args(argv)
    run_dir = Path(args.out or Path("runs") / Path(args.recipe).stem)
    metrics = run(args.recipe, run_dir, resume=args.resume, overrides=args.set, epochs=args.epochs,
                  max_train_examples=args.max_train_examples, from_model=args.from_model,
                  one_shot=args.one_shot, strategy=args.strategy, verbose=not args.quiet)
    dense = "n/a (sparse from the first step)" if metrics["dense_score"] is None else f"{metrics['dense_score']:.4f}"
    print(f"dense {metrics['metric']} {dense}  sparse {metrics['metric']} "
          f"{metrics['sparse_score']:.4f}  "
          f"sparsity {metrics['overall_sparsity']:.4f} over {len(metrics['layer_sparsity'])} layers  -> {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("tfsparse.train", main))
