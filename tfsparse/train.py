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
`--strategy multi-worker`; each worker runs this same command.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import tfsparse  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfsparse import atomic
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.recipe import load_recipe

STATE = "state.json"
PHASES = ("dense", "pruning")
RUN_OPTIONS = ("epochs", "max_train_examples", "from_model", "one_shot")  # kept for --resume


def parse_args(argv):
    parser = ArgumentParser(prog="python -m tfsparse.train", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe TOML, e.g. models/mobilenet_v1.toml")
    parser.add_argument("--out", help="run folder (default: runs/<recipe name>)")
    parser.add_argument("--epochs", type=int, help="cap every phase (dense, pruning, fine-tune) at N epochs")
    parser.add_argument("--max-train-examples", type=int, help="use only the first N training examples")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--from", dest="from_model", help="start from this trained dense .keras/.h5 model")
    parser.add_argument("--one-shot", choices=("magnitude", "random"),
                        help="prune in one step to final_sparsity, then fine-tune [train] finetune_epochs")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multi-worker"), default="default")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe value (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    args = parser.parse_args(argv)
    for name in ("epochs", "max_train_examples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return args


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


class RunState:
    """`state.json`: which phase the run is in and how many epochs each finished."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / STATE
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


def main(argv=None):
    args = parse_args(argv)
    run_dir = Path(args.out or Path("runs") / Path(args.recipe).stem)
    if run_dir.exists() and not run_dir.is_dir() or run_dir.is_symlink() and not run_dir.exists():
        raise UserError(f"--out {run_dir}: exists and is not a folder (or is a dangling link)")
    if args.resume:
        if not (run_dir / STATE).is_file():
            raise UserError(f"--resume: no run to resume in {run_dir} (no {STATE})")
        # The run continues as it was started: same resolved recipe, same options.
        recipe = load_recipe(run_dir / "config.toml", args.set)
        recipe.name = Path(args.recipe).stem
        saved = json.loads((run_dir / STATE).read_text()).get("options", {})
        for name in RUN_OPTIONS:
            if getattr(args, name) is None:
                setattr(args, name, saved.get(name))
        for stale in run_dir.rglob(".*.tmp*"):  # a temporary the kill left behind
            stale.unlink()
        print(f"resuming {run_dir} with its config.toml", flush=True)
    else:
        recipe = load_recipe(args.recipe, args.set)
        if (run_dir / STATE).exists():
            raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, or --out for a new one")
    if args.from_model and not Path(args.from_model).is_file():
        raise UserError(f"--from: no such model file: {args.from_model}")
    if args.one_shot and (recipe.pruning.sparsity_m_by_n or (recipe.pruning.block_size or [1, 1]) != [1, 1]):
        raise UserError("--one-shot prunes unstructured; unset pruning.sparsity_m_by_n / pruning.block_size")

    strategy = make_strategy(args.strategy)
    # Everything below imports TensorFlow; all input checks that need it (data
    # present, model buildable, policy accepts it) still run before any output.
    from tfsparse import datasets
    from tfsparse.trainer import Trainer

    splits = datasets.load(recipe.data, recipe.model.args, args.max_train_examples)
    trainer = Trainer(recipe, splits, run_dir, strategy, epochs_cap=args.epochs,
                      verbose=not args.quiet)
    trainer.validate(from_model=args.from_model)

    run_dir.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        atomic.write_text(run_dir / "config.toml", f"# resolved recipe of {args.recipe}\n" + recipe.to_toml())
    state = RunState(run_dir)
    state.data["options"] = {name: getattr(args, name) for name in RUN_OPTIONS}
    state.save()
    metrics = trainer.run(state, from_model=args.from_model, one_shot=args.one_shot)
    print(f"dense {metrics['metric']} {metrics['dense_score']:.4f}  sparse {metrics['metric']} "
          f"{metrics['sparse_score']:.4f}  "
          f"sparsity {metrics['overall_sparsity']:.4f} over {len(metrics['layer_sparsity'])} layers  -> {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("tfsparse.train", main))
