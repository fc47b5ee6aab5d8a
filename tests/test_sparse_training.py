"""Sparse from the first step (`[pruning] method = static | set | rigl`): real TensorFlow, tiny models.

In-process tests drive `tfsparse.pruning.sparse_training.SparseTraining` inside `model.fit`
and check every step; the command-line tests run `tfsparse train` (bad config; kill/resume).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfsparse  # noqa: F401  (Keras 2 before TensorFlow)
from conftest import kill_after_epochs  # noqa: E402
from tfsparse.recipe import PruningConfig

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "models" / "mobilenet_v1.toml"


# ---- config ----------------------------------------------------------------------------------


def test_config_round_trips_and_rejects_what_a_method_does_not_use():
    config = PruningConfig(method="rigl", distribution="erk", update_every=50, drop_fraction=0.2, stop_updates=0.5)
    assert PruningConfig.from_config(config.get_config()) == config
    assert PruningConfig.from_config(PruningConfig().get_config()).method == "gradual"
    with pytest.raises(ValueError, match=r"unknown pruning.method 'rigel' \(did you mean rigl\?\)"):
        PruningConfig(method="rigel")
    with pytest.raises(ValueError, match="pruning.update_every has no meaning for pruning.method = 'static'"):
        PruningConfig(method="static", update_every=10)
    with pytest.raises(ValueError, match="pruning.distribution has no meaning for pruning.method = 'gradual'"):
        PruningConfig(distribution="erk")
    with pytest.raises(ValueError, match="pruning.block_size is not supported with pruning.method = 'set'"):
        PruningConfig(method="set", block_size=[1, 4])
    with pytest.raises(ValueError, match="pruning.drop_fraction must be in"):
        PruningConfig(method="set", drop_fraction=1.5)


# ---- ERK -------------------------------------------------------------------------------------


def test_erk_sparsities_average_to_the_target_over_pruned_params():
    from tfsparse.pruning import sparse_training as st

    shapes = {"pw2": (1, 1, 32, 64), "pw3": (1, 1, 64, 128), "pw4": (1, 1, 128, 256), "fc": (256, 10)}
    sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
    s = st.erk_sparsities(shapes, 0.9)
    total = sum(sizes.values())
    assert abs(sum(s[n] * sizes[n] for n in shapes) / total - 0.9) < 1e-9
    # Density proportional to sum(shape)/prod(shape): smaller / thinner layers stay denser.
    for a in shapes:
        for b in shapes:
            ratio = (1 - s[a]) / (1 - s[b])
            assert ratio == pytest.approx((sum(shapes[a]) / sizes[a]) / (sum(shapes[b]) / sizes[b]))
    assert s["pw2"] < s["pw3"] < s["pw4"]
    # A layer whose ERK density would exceed 1 is made dense; the others carry the whole budget.
    tiny = {"small": (1, 1, 3, 4), "big": (1, 1, 256, 512)}
    t = st.erk_sparsities(tiny, 0.5)
    assert t["small"] == 0.0
    n_small, n_big = 12, 256 * 512
    assert (t["big"] * n_big) / (n_small + n_big) == pytest.approx(0.5)
    assert st.uniform_sparsities(shapes, 0.8) == {n: 0.8 for n in shapes}


# ---- every step of a real fit ----------------------------------------------------------------


def _tiny_model():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    inputs = tf.keras.Input((6, 6, 3))
    x = tf.keras.layers.Conv2D(8, 1, activation="relu", name="pw1")(inputs)
    x = tf.keras.layers.Conv2D(32, 1, activation="relu", name="pw2")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(4, name="fc")(x)
    model = tf.keras.Model(inputs, outputs)
    model.compile(tf.keras.optimizers.Adam(0.01),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data(n=64):
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, 6, 6, 3)).astype(np.float32), rng.integers(0, 4, size=n)


class _Recorder:
    """A callback after SparseTraining that checks and records every step."""

    @staticmethod
    def make(sparse, expected_active):
        import tensorflow as tf

        class Recorder(tf.keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.masks = []  # one {layer: mask} per step

            def on_train_batch_end(self, batch, logs=None):
                step = int(self.model.optimizer.iterations.numpy())
                masks = {}
                for name, active in expected_active.items():
                    kernel = self.model.get_layer(name).kernel.numpy()
                    mask = sparse.masks[name]
                    # Exactly the configured number of active weights, masked ones exactly zero,
                    # and so is their optimizer state (Adam's m and v).
                    assert int(mask.sum()) == active, (step, name)
                    assert np.all(kernel[~mask] == 0), (step, name)
                    slots = sparse.slots[name]
                    assert len(slots) == 2
                    for slot in slots:
                        assert np.all(slot.numpy()[~mask] == 0), (step, name, slot.name)
                    masks[name] = mask.copy()
                self.masks.append((step, masks))

        return Recorder()


@pytest.mark.parametrize("method", ["static", "set", "rigl"])
def test_exact_sparsity_every_step_and_updates_only_on_schedule(method, tmp_path):
    from tfsparse.pruning import magnitude
    from tfsparse.pruning import sparse_training as st

    model = _tiny_model()
    x, y = _data()
    names = ["pw1", "pw2", "fc"]
    shapes = {n: tuple(model.get_layer(n).kernel.shape) for n in names}
    targets = st.erk_sparsities(shapes, 0.75)
    rng = np.random.default_rng(0)
    masks = st.random_masks(shapes, targets, rng)
    active = {n: int(m.sum()) for n, m in masks.items()}
    for n in names:
        assert active[n] == np.prod(shapes[n]) - st.n_zeros(int(np.prod(shapes[n])), targets[n])
    schedule = st.UpdateSchedule(update_every=3, stop_step=12, drop_fraction=0.5)
    gradient_steps = []

    def gradient_batch(r):
        gradient_steps.append(int(model.optimizer.iterations.numpy()))
        idx = r.choice(len(x), 8, replace=False)
        return x[idx], y[idx]

    sparse = st.SparseTraining(method, masks, schedule, rng, magnitude.prunable_kernel,
                               gradient_batch=gradient_batch, log_dir=str(tmp_path / "tb"))
    recorder = _Recorder.make(sparse, active)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[sparse, recorder])
    assert len(recorder.masks) == 16

    previous = masks
    scheduled = schedule.update_steps() if method != "static" else []
    assert scheduled == ([3, 6, 9, 12] if method != "static" else [])
    for step, current in recorder.masks:
        changed = {n: int((current[n] & ~previous[n]).sum()) for n in names}
        dropped = {n: int((previous[n] & ~current[n]).sum()) for n in names}
        assert changed == dropped  # the number of connections never changes
        if step not in scheduled:
            assert sum(changed.values()) == 0, (step, changed)
        else:
            fraction = 0.5 * 0.5 * (1 + math.cos(math.pi * step / 12))  # cosine decay to 0 at stop
            entry = next(e for e in sparse.history if e["step"] == step)
            assert entry["drop_fraction"] == pytest.approx(fraction, abs=1e-6)
            for n in names:
                k = math.floor(fraction * active[n])
                assert entry["dropped"][n] == k and entry["changed"][n] == changed[n] <= k
            # SET/RigL really move connections (the last update, at fraction 0, moves none).
            assert step == 12 or sum(changed.values()) > 0, step
        previous = current
    # RigL's dense gradient is computed on update steps only; SET and static never compute it.
    assert gradient_steps == (scheduled if method == "rigl" else [])

    # TensorBoard: per-layer sparsity every epoch, connections changed at each SET/RigL update.
    import tensorflow as tf

    tags = set()
    for event_file in (tmp_path / "tb").rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags |= {v.tag for v in event.summary.value}
    assert {"sparsity/pw1", "sparsity/fc", "sparsity/overall"} <= tags
    assert ("sparse_training/connections_changed" in tags) == (method != "static")


def test_rigl_regrows_where_the_dense_gradient_is_largest():
    """A constructed case: y = w . x with 8 inputs, 4 active weights; the gradient of the squared
    error is largest at inputs 5 and 6, so the 2 dropped (smallest) weights regrow there, at zero."""
    import tensorflow as tf

    from tfsparse.pruning import magnitude
    from tfsparse.pruning import sparse_training as st

    inputs = tf.keras.Input((8,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, use_bias=False, name="fc")(inputs))
    model.compile(tf.keras.optimizers.Adam(0.01), "mse")
    kernel = np.array([0.1, -0.2, 0.3, -0.4, 0.0, 0.0, 0.0, 0.0], np.float32).reshape(8, 1)
    model.get_layer("fc").kernel.assign(kernel)
    mask = (kernel != 0)
    x = np.array([[1.0, 1.0, 1.0, 1.0, 0.5, 9.0, 5.0, 2.0]], np.float32)
    y = np.array([[3.0]], np.float32)
    sparse = st.SparseTraining("rigl", {"fc": mask}, st.UpdateSchedule(1, 10 ** 9, 0.6), np.random.default_rng(0),
                               magnitude.prunable_kernel, gradient_batch=lambda rng: (x, y))
    sparse.set_model(model)
    sparse.on_train_begin()
    sparse.slots["fc"][0].assign(np.ones((8, 1), np.float32))  # optimizer state to be reset at new positions
    changed = sparse.update(1)
    new_mask = sparse.masks["fc"].reshape(-1)
    assert changed == {"fc": 2}
    assert list(np.flatnonzero(new_mask)) == [2, 3, 5, 6]
    w = model.get_layer("fc").kernel.numpy().reshape(-1)
    assert w[5] == 0 and w[6] == 0 and w[2] == pytest.approx(0.3) and w[3] == pytest.approx(-0.4)
    m = sparse.slots["fc"][0].numpy().reshape(-1)
    assert m[5] == 0 and m[6] == 0 and m[2] == 1 and m[3] == 1


# ---- the command -----------------------------------------------------------------------------

TINY = ["--set", "model.width_multiplier=0.25", "--set", "model.depth=4", "--set", "model.dropout=0.0",
        "--set", "train.batch_size=64", "--set", "data.validation_examples=128", "--max-train-examples", "256",
        "--quiet"]


def tfsparse_cli(*args, env=None, timeout=300, popen=False):
    argv = [sys.executable, "-m", "tfsparse", *map(str, args)]
    environment = {**os.environ, **(env or {})}
    if popen:
        return subprocess.Popen(argv, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment)


@pytest.mark.parametrize("args, message", [
    (["--set", 'pruning.method="rigel"'], "unknown pruning.method 'rigel' (did you mean rigl?)"),
    (["--set", 'pruning.method="static"', "--set", "pruning.update_every=10"],
     "pruning.update_every has no meaning for pruning.method = 'static' (used by set, rigl)"),
    (["--set", 'pruning.method="set"', "--set", "pruning.sparsity_m_by_n=[2, 4]"],
     "pruning.sparsity_m_by_n is not supported with pruning.method = 'set' (only with gradual)"),
    (["--set", 'pruning.method="rigl"', "--strategy", "mirrored"],
     "--strategy is not supported with pruning.method = 'rigl'"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, args, message):
    out = tmp_path / "never"
    result = tfsparse_cli("train", RECIPE, "--out", out, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def _final(run: Path, epochs: int):
    import tensorflow as tf

    from tfsparse.pruning import sparse_training as st

    masks, _rng, history = st.load_state(run / "checkpoints" / f"sparse_state.e{epochs}.npz")
    model = tf.keras.models.load_model(run / "sparse.keras", compile=False)
    kernels = {n: model.get_layer(n).kernel.numpy() for n in masks}
    return masks, history, kernels


def test_resume_after_kill_continues_with_identical_masks(tmp_path):
    """SET on a tiny MobileNetV1 (4 epochs of 4 steps): killed after an epoch and resumed, the run
    ends with the same masks, update history and weights, bit for bit, as an uninterrupted run
    (deterministic kernels, no dropout: see tfsparse.training.from_scratch)."""
    # update_every 100 at full size rescales to every step of this 16-step run, updates until the last.
    args = [*TINY, "--set", 'pruning.method="set"', "--set", 'pruning.distribution="erk"',
            "--set", "pruning.stop_updates=1.0", "--set", "train.dense_epochs=2", "--set", "train.epochs=2"]
    env = {"TF_DETERMINISTIC_OPS": "1"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = tfsparse_cli("train", RECIPE, "--out", whole, *args, env=env, popen=True)
    proc = tfsparse_cli("train", RECIPE, "--out", killed, *args, env=env, popen=True)
    done = kill_after_epochs(proc, killed)
    assert done < 4 and not (killed / "metrics.json").exists()
    result = tfsparse_cli("train", RECIPE, "--out", killed, "--resume", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert reference.wait(timeout=300) == 0

    masks_a, history_a, kernels_a = _final(whole, 4)
    masks_b, history_b, kernels_b = _final(killed, 4)
    # Updates happened before and after the kill point.
    steps = [e["step"] for e in history_a]
    assert min(steps) <= done * 4 < max(steps), (steps, done)
    assert history_a == history_b
    for name in masks_a:
        assert np.array_equal(masks_a[name], masks_b[name]), name
        assert np.array_equal(kernels_a[name], kernels_b[name]), name
        assert np.all(kernels_b[name][~masks_b[name]] == 0)
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["epochs"] == {"dense": 0, "pruning": 4} and metrics["dense_score"] is None
    assert abs(metrics["overall_sparsity"] - 0.9) < 0.005


def test_api_callback_keeps_a_plain_model_at_the_policy_layers_sparsity():
    import tfsparse as api

    model = _tiny_model()
    x, y = _data(32)
    callback = api.sparse_training_callback(model, {"method": "static", "distribution": "uniform",
                                                    "final_sparsity": 0.5, "policy": "pw", "exclude": "^pw1$"},
                                            total_steps=4)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    assert list(callback.masks) == ["pw2"]
    assert np.mean(model.get_layer("pw2").kernel.numpy() == 0) == 0.5
    assert np.mean(model.get_layer("pw1").kernel.numpy() == 0) == 0
    with pytest.raises(api.TfsparseError, match="trains sparse from the first step"):
        api.prune(model, {"method": "rigl", "final_sparsity": 0.5}, total_steps=4)
