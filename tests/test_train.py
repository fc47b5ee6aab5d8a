"""`python -m tfsparse.train` end to end on tiny slices: real TensorFlow, real TF-MOT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_after_epochs  # noqa: E402

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "models" / "mobilenet_v1.toml"
# A tiny MobileNetV1 (4 blocks, x0.25 at 32x32) so each run takes seconds on 2 cores.
TINY = ["--set", "model.width_multiplier=0.25", "--set", "model.depth=4", "--set", "train.batch_size=64",
        "--set", "data.validation_examples=256", "--quiet",
        "--set", "train.equal_epochs_dense=false"]  # tests/test_generalisation.py covers it


def train(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "tfsparse.train", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def assert_reached(m: dict, target: float):
    assert abs(m["overall_sparsity"] - target) < 0.01
    assert all(abs(s - target) < 0.02 for s in m["layer_sparsity"].values()), m["layer_sparsity"]


@pytest.fixture(scope="module")
def smoke_run(tiny_run):
    """The session's tiny run (tests/conftest.py: 1 epoch per phase on 256 images, --quiet) and
    what `python -m tfsparse.train` printed."""
    return tiny_run, (tiny_run.parent / "train.stdout").read_text()


def test_smoke_run_writes_every_output_and_reaches_target(smoke_run):
    run, stdout = smoke_run
    for name in ("dense.keras", "sparse.keras", "config.toml", "metrics.json", "checkpoints/pruning.keras"):
        assert (run / name).is_file(), name
    m = metrics(run)
    assert_reached(m, 0.9)
    assert set(m) >= {"dense_accuracy", "sparse_accuracy", "overall_sparsity", "layer_sparsity", "seconds_per_epoch"}
    assert set(m["seconds_per_epoch"]) == {"dense", "pruned"}
    assert (m["strategy"], m["replicas"]) == ("DefaultDistributionStrategy", 1)
    # The xnnpack policy prunes the 1x1 convolutions and nothing else; the recipe's
    # `exclude` keeps the first one dense.
    assert sorted(m["layer_sparsity"]) == sorted(f"block{i}_pw_conv" for i in range(2, 5))
    # An 8-step pruning phase still ends at final_sparsity, on TF-MOT's pruning grid.
    s = m["schedule"]
    assert s["end_step"] <= 8 and (s["end_step"] - s["begin_step"]) % s["frequency"] == 0
    assert "[pruning]" in stdout and "sparse accuracy" in stdout
    assert list((run / "logs").rglob("events.out.tfevents.*")), "no TensorBoard summaries"
    config = (run / "config.toml").read_text()
    assert "width_multiplier = 0.25" in config and "final_sparsity = 0.9" in config


def test_sparse_model_has_exact_zeros_and_no_wrappers(smoke_run):
    import tensorflow as tf

    run, _ = smoke_run
    sparse = tf.keras.models.load_model(run / "sparse.keras", compile=False)
    assert not any("prune_low_magnitude" in layer.name for layer in sparse.layers)
    kernel = sparse.get_layer("block3_pw_conv").kernel.numpy()
    assert abs(np.mean(kernel == 0) - 0.9) < 0.01
    assert np.mean(sparse.get_layer("block1_pw_conv").kernel.numpy() == 0) < 0.01  # excluded
    dense = tf.keras.models.load_model(run / "dense.keras", compile=False)
    assert np.mean(dense.get_layer("block3_pw_conv").kernel.numpy() == 0) < 0.01


def test_resume_after_kill_continues_the_schedule(tmp_path):
    """Kill during the pruning phase; --resume finishes without restarting the schedule."""
    run = tmp_path / "resume"
    args = [RECIPE, "--out", run, "--max-train-examples", 256, *TINY,
            "--set", "train.dense_epochs=1", "--set", "train.epochs=3", "--set", "pruning.end=1.0"]
    proc = subprocess.Popen([sys.executable, "-m", "tfsparse.train", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_before = kill_after_epochs(proc, run)
    assert done_before < 3 and not (run / "metrics.json").exists()

    result = train(RECIPE, "--out", run, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"epochs {done_before + 1}..3 of 3" in result.stdout
    m = metrics(run)
    assert m["epochs"] == {"dense": 1, "pruning": 3}
    assert_reached(m, 0.9)

    # TF-MOT's step counters continued: 3 epochs x 4 steps in total, not 4 x (3 - done_before).
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    with tfmot.sparsity.keras.prune_scope():
        model = tf.keras.models.load_model(run / "checkpoints" / "pruning.keras")
    steps = [int(w.numpy()) for w in model.weights if "pruning_step" in w.name]
    assert steps and set(steps) == {3 * 4}


def test_one_shot_random_and_from_model(smoke_run, tmp_path):
    run, _ = smoke_run
    out = tmp_path / "oneshot"
    result = train(RECIPE, "--out", out, "--from", run / "dense.keras", "--one-shot", "random", "--epochs", 1,
                   "--max-train-examples", 256, "--set", "pruning.final_sparsity=0.5", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    m = metrics(out)
    assert_reached(m, 0.5)
    assert m["epochs"]["dense"] == 0 and m["schedule"]["kind"] == "one-shot random"


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """Catches `--strategy mirrored` being ignored or collapsing to one replica (the CPU not
    split into logical devices): the run must report MirroredStrategy with 2 replicas in
    sync, and still reach the pruning target through the replicas' all-reduced updates."""
    out = tmp_path / "mirrored"
    result = train(RECIPE, "--out", out, "--epochs", 1, "--max-train-examples", 256, "--strategy", "mirrored",
                   *TINY, env={"TFSPARSE_LOGICAL_CPUS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    m = metrics(out)
    assert (m["strategy"], m["replicas"]) == ("MirroredStrategy", 2)
    assert_reached(m, 0.9)


@pytest.mark.parametrize("args, message", [
    (["--set", "train.epoch=3"], "unknown key 'train.epoch'"),
    (["--set", "pruning.final_sparsity=1.0"], "pruning.final_sparsity must be in [0, 1), got 1.0"),
    (["--set", "model.name=mobilenet_v3"], "unknown model 'mobilenet_v3'"),
    (["--set", "data.name=cifar10"], "unknown data set 'cifar10'"),
    (["--from", "no/such/model.keras"], "no such model file: no/such/model.keras"),
    # The earliest unsupported layer in model order, every run (TF-MOT's own walk, over a set of
    # layers, named one of a branch's 3x3 convs or max-pools, by memory address).
    (["--set", "model.name=inception"], "layer 'mixed1_b3a_conv' (Conv2D) has kernel (3, 3) and strides (1, 1)"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message, capsys):
    """In-process through the `tfsparse train` command (what the console script runs), so the
    seven cases share one TensorFlow start-up; test_missing_recipe_and_missing_data checks a
    real process's exit status and stderr."""
    from tfsparse import commands

    out = tmp_path / "never"
    try:
        status = commands.main(["train", str(RECIPE), "--out", str(out), *args])
    except SystemExit as e:  # argparse's usage errors exit from the parser, as in the console script
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
    assert not out.exists()


def test_missing_recipe_and_missing_data(tmp_path):
    result = train(tmp_path / "nope.toml")
    assert result.returncode == 2 and "recipe not found" in result.stderr
    result = train(RECIPE, "--out", tmp_path / "x", env={"TFSPARSE_CACHE": str(tmp_path / "empty")})
    assert result.returncode == 2
    assert "python -m tfsparse.datasets fetch fashion_mnist" in result.stderr
    assert not (tmp_path / "x").exists()
