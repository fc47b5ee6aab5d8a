"""Train vs test metric of finished run folders: the generalisation gap of their dense and sparse models.

    python -m tfsparse.training.generalisation runs/mobilenet_v1 runs/bbc_news --json gap.json

New runs record the same figures in `metrics.json["generalisation"]` as they train
(`tfsparse.training.trainer`); this measures them for run folders trained before that, from
their `config.toml`, `dense.keras` and `sparse.keras` (and `dense_equal.keras` when present):
the recipe's metric on the first `TRAIN_EVAL_EXAMPLES` training examples and on the test split,
evaluated exactly like the trainer's test score (no dropout, no augmentation). The gap is
train - test for accuracy, test - train for an error (mse, mae): positive = fits training data better.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tfsparse import atomic
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.run_folder import DENSE_EQUAL_MODEL, RunFolder


def measure(run_dir: Path) -> dict:
    """{"recipe", "metric", "train_examples", "dense"/"sparse"(/"dense_equal_epochs"): {train, test, gap}}."""
    import tensorflow as tf

    from tfsparse import datasets
    from tfsparse.recipe import load_recipe
    from tfsparse.training.trainer import TRAIN_EVAL_EXAMPLES, Trainer

    run = RunFolder(run_dir)
    if not run.sparse_model.is_file() or not run.dense_model.is_file() or not run.config.is_file():
        raise UserError(f"{run_dir}: not a finished run folder (config.toml, dense.keras, sparse.keras)")
    recipe = load_recipe(run.config)
    if recipe.rl is not None:
        raise UserError(f"{run_dir}: an [rl] run records its train/test episodes in metrics.json already")
    splits = datasets.load_for(recipe)
    trainer = Trainer(recipe, splits, run.path, tf.distribute.get_strategy(), verbose=False)
    metric = recipe.train.metric
    out = {"recipe": run.name, "metric": metric, "train_examples": min(len(splits.x_train), TRAIN_EVAL_EXAMPLES)}
    models = {"dense": run.dense_model, "sparse": run.sparse_model, "dense_equal_epochs": run.path / DENSE_EQUAL_MODEL}
    for name, path in models.items():
        if not path.is_file():
            continue
        model = tf.keras.models.load_model(path, compile=False)
        model.compile(loss=recipe.train.loss, metrics=[metric])
        test, fit = trainer.score(model), trainer.train_score(model)
        out[name] = {"train": round(fit, 6), "test": round(test, 6),
                     "gap": round(fit - test if metric == "accuracy" else test - fit, 6)}
    return out


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m tfsparse.training.generalisation", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished run folders (runs/<name>)")
    parser.add_argument("--json", help="also write the results here (atomically)")
    args = parser.parse_args(argv)
    results = [measure(Path(r)) for r in args.runs]
    print("| run | metric | dense train | dense test | dense gap | sparse train | sparse test | sparse gap |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        pct = r["metric"] == "accuracy"
        f = (lambda v: f"{100 * v:.2f}%") if pct else (lambda v: f"{v:.5f}")
        g = (lambda v: f"{100 * v:+.2f} pts") if pct else (lambda v: f"{v:+.5f}")
        print(f"| {r['recipe']} | {r['metric']} | {f(r['dense']['train'])} | {f(r['dense']['test'])} | "
              f"{g(r['dense']['gap'])} | {f(r['sparse']['train'])} | {f(r['sparse']['test'])} | {g(r['sparse']['gap'])} |")
    if args.json:
        atomic.write_json(Path(args.json), {"runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(run_main("tfsparse.training.generalisation", main))
