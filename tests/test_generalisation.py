"""Generalisation evidence: train and test metric of every model, and the equally trained dense
reference (`[train] equal_epochs_dense`) in metrics.json, the report and its gap plot.

One real tiny run (FrozenLake imitation recipe, 1 epoch per phase on 256 examples), exported
to fp32 and reported; the report reads only JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def equal_run(tmp_path_factory):
    from tfsparse.exporting import exporter
    from tfsparse.training import command

    folder = tmp_path_factory.mktemp("gen")
    run_dir, export_dir = folder / "runs" / "fl", folder / "export" / "fl"
    metrics = command.run(str(ROOT / "models" / "frozenlake.toml"), run_dir, epochs=1, max_train_examples=256,
                          overrides=["train.equal_epochs_dense=true"], verbose=False)
    assert exporter.main([str(run_dir), "--out", str(export_dir), "--variants", "fp32"]) == 0
    return folder, run_dir, export_dir, metrics


def test_metrics_record_train_and_test_of_dense_sparse_and_the_equal_epochs_dense(equal_run):
    _, run_dir, _, metrics = equal_run
    gen = metrics["generalisation"]
    assert gen["metric"] == "accuracy"
    assert gen["dense"]["epochs"] == 1 and gen["sparse"]["epochs"] == 2
    assert gen["dense_equal_epochs"]["epochs"] == 2  # as long as dense + pruning
    for model in ("dense", "sparse", "dense_equal_epochs"):
        entry = gen[model]
        assert 0 <= entry["train"] <= 1 and 0 <= entry["test"] <= 1
        assert entry["gap"] == pytest.approx(entry["train"] - entry["test"], abs=1e-6)
    assert metrics["dense_train_score"] == gen["dense"]["train"]
    assert metrics["sparse_score"] == gen["sparse"]["test"]
    assert metrics["dense_equal_epochs_score"] == gen["dense_equal_epochs"]["test"]
    assert metrics["epochs"] == {"dense": 1, "pruning": 1}
    assert (run_dir / "dense_equal.keras").is_file()
    # The equal-epochs model really trained on: its weights differ from the dense model's.
    import numpy as np
    import tensorflow as tf
    a = tf.keras.models.load_model(run_dir / "dense.keras", compile=False).get_weights()
    b = tf.keras.models.load_model(run_dir / "dense_equal.keras", compile=False).get_weights()
    assert any(not np.allclose(x, y) for x, y in zip(a, b))


def test_report_shows_the_gap_column_the_reference_row_and_the_gap_plot(equal_run):
    from tfsparse.reporting import report

    folder, run_dir, export_dir, metrics = equal_run
    out = folder / "reports" / "fl"
    (out / "bench").mkdir(parents=True)
    point = report.collect_point("fl", run_dir, export_dir, out / "bench")
    written = report.write(out, "fl", [point])
    text = (out / "report.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert "train-test gap (Keras)" in header
    reference = next(line for line in text.splitlines() if "dense, 2 epochs (Keras)" in line)
    equal = metrics["generalisation"]["dense_equal_epochs"]
    assert f"{100 * equal['test']:.2f}%" in reference  # its test score, from metrics.json
    assert f"{100 * equal['gap']:+.2f} pts" in reference
    assert "sparse vs equally trained dense" in text and "the reference row is the dense model" in text
    assert out / report.GAP_PLOT in written and (out / report.GAP_PLOT).stat().st_size > 1000
    rows = json.loads((out / "results.json").read_text())["points"][0]["rows"]
    assert [r["weights"] for r in rows if r.get("reference")] == ["dense, 2 epochs (Keras)"]


def test_default_recipe_trains_the_equal_epochs_reference():
    from tfsparse.recipe import load_recipe

    assert load_recipe(ROOT / "models" / "mobilenet_v1.toml").train.equal_epochs_dense is True
    assert load_recipe(ROOT / "models" / "frozenlake.toml").train.equal_epochs_dense is False


def test_report_without_the_reference_says_sparse_vs_dense_is_not_what_pruning_costs():
    """`make demo` trains no equal-epochs reference: the report must not speak of a row it lacks."""
    from tfsparse.reporting import report

    g = {"metric": "accuracy", "train_split": "the first 100 training examples",
         "dense": {"train": 0.9, "test": 0.8}, "sparse": {"train": 0.91, "test": 0.85}}
    without = "\n".join(report.generalisation_lines([{"name": "demo", "generalisation": g}]))
    assert "no equally trained dense reference here" in without and "the reference row" not in without
    assert "dense 90.00% train / 80.00% test, sparse 91.00% / 85.00%." in without
    equal = {**g, "dense_equal_epochs": {"epochs": 9, "train": 0.95, "test": 0.86}}
    with_ = "\n".join(report.generalisation_lines([{"name": "full", "generalisation": equal}]))
    assert "the reference row is the dense model" in with_ and "-1.00 pts on test" in with_
    assert report.generalisation_lines([{"name": "x", "generalisation": {}}]) == []
