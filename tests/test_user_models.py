"""Users' own models in: Keras 3 files rebuilt as tf_keras, bad files, new classification heads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfsparse  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow: tf.keras is tf_keras)
import keras  # noqa: E402  (Keras 3, in the same process)
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

from tfsparse.cli import UserError  # noqa: E402
from tfsparse.recipe import load_recipe  # noqa: E402
from tfsparse.training import keras3  # noqa: E402

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "models" / "mobilenet_v1.toml"
L = keras.layers


def keras3_net(classes=10, extra=None):
    """The issue's network in Keras 3: ZeroPadding -> 3x3 stride-2 conv -> depthwise/1x1 -> GAP -> Dense,
    with BatchNorm, hard-swish, a squeeze-and-excite gate and a residual Add."""
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Rescaling(1 / 127.5, -1, name="scale")(inp)
    x = L.ZeroPadding2D(1, name="stem_pad")(x)
    x = L.Conv2D(16, 3, strides=2, use_bias=False, name="stem")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("hard_swish", name="stem_hswish")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.ReLU(6.0, name="dw_relu")(y)
    y = L.Conv2D(16, 1, name="pw")(y)
    x = L.Add(name="res")([x, y])
    s = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    s = L.Conv2D(16, 1, activation="hard_sigmoid", name="se_gate")(s)
    x = L.Multiply(name="se_mul")([x, s])
    x = L.ZeroPadding2D(1, name="dw2_pad")(x)
    x = L.DepthwiseConv2D(3, strides=2, name="dw2")(x)
    x = L.Activation("relu", name="dw2_relu")(x)
    x = L.Conv2D(32, 1, activation="relu", name="pw2")(x)
    if extra is not None:
        x = extra(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dropout(0.1, name="drop")(x)
    out = L.Dense(classes, activation="softmax", name="classifier")(x)
    model = keras.Model(inp, out, name="k3net")
    rng = np.random.default_rng(0)
    bn = model.get_layer("stem_bn")
    bn.set_weights([rng.uniform(0.5, 1.5, 16), rng.normal(0, 0.1, 16), rng.normal(0, 0.1, 16), rng.uniform(0.5, 1.5, 16)])
    return model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])  # Keras 3 writes both; tf_keras reads neither
def test_keras3_model_rebuilt_in_tf_keras_matches_and_prunes(tmp_path, suffix):
    path = tmp_path / f"k3{suffix}"
    keras3_net().save(path)
    assert keras3.is_keras3_file(path)
    model = tfsparse.load_model(path)
    assert isinstance(model, tf.keras.Model) and not isinstance(model, keras.Model)
    original = keras.models.load_model(path)
    x = np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    assert np.max(np.abs(np.asarray(original(x)) - model(x).numpy())) <= 1e-5
    # TF-MOT prunes it: the XNNPACK policy accepts the rebuilt graph (Rescaling moved out first).
    fixed = tfsparse.doctor(model, predict=False).fixed_model
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        fixed, pruning_policy=tfmot.sparsity.keras.PruneForLatencyOnXNNPack(),
        pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0))
    assert sum("prune_low_magnitude" in layer.name for layer in pruned.layers) == 3  # pw, se_gate, pw2

    seq = keras.Sequential([keras.Input((6,), dtype="int32"), L.Embedding(20, 4, name="emb"), L.Flatten(),
                            L.Dense(3, name="out")])
    seq.save(tmp_path / f"seq{suffix}")
    rebuilt = tfsparse.load_model(tmp_path / f"seq{suffix}")
    ids = np.arange(12, dtype=np.int32).reshape(2, 6)
    np.testing.assert_allclose(rebuilt(ids).numpy(), np.asarray(seq(ids)), atol=1e-6)


def train(*args, timeout=400):
    return subprocess.run([sys.executable, "-m", "tfsparse.train", str(RECIPE), *map(str, args), "--quiet",
                           "--epochs", "1", "--max-train-examples", "128", "--set", "data.validation_examples=128"],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def one_line_exit_2(result, *needles):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert all(n in lines[0] for n in needles), lines[0]
    assert len(lines[0]) < 500


def test_bad_user_models_are_one_line_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.keras"
    keras3_net(extra=L.LayerNormalization(name="my_norm")).save(bad)
    out = tmp_path / "run"
    one_line_exit_2(train("--from", bad, "--out", out), "'my_norm'", "LayerNormalization", "bad.keras")
    assert not out.exists()
    five = tmp_path / "five.keras"
    keras3_net(classes=5).save(five)
    one_line_exit_2(train("--from", five, "--out", out), "5 classes", "10", "replace_head")
    assert not out.exists()
    with pytest.raises(UserError, match="head_epochs"):
        load_recipe(RECIPE, ["train.head_epochs=1"])


def test_keras3_model_with_new_head_trains_and_prunes(tmp_path):
    five = tmp_path / "five.keras"
    keras3_net(classes=5).save(five)
    out = tmp_path / "run"
    result = train("--out", out, "--set", f"model.from='{five}'", "--set", "model.replace_head=true",
                   "--set", "train.head_epochs=1", "--set", "train.batch_size=64", "--one-shot", "magnitude")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[head] 1 epoch(s), backbone frozen" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"]["dense"] == 1
    assert sorted(metrics["layer_sparsity"]) == ["pw", "pw2", "se_gate"]
    assert abs(metrics["overall_sparsity"] - 0.9) < 0.01
    dense = tf.keras.models.load_model(out / "dense.keras", compile=False)
    assert dense.get_layer("new_head").units == 10 and dense.output_shape == (None, 10)


def test_tf_keras_h5_and_savedmodel_load(tmp_path):
    inp = tf.keras.Input((8, 8, 3))
    out = tf.keras.layers.Dense(2)(tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Conv2D(4, 1)(inp)))
    model = tf.keras.Model(inp, out)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    model.save(tmp_path / "m.h5")
    model.save(tmp_path / "saved", save_format="tf")
    assert not keras3.is_keras3_file(tmp_path / "m.h5")  # tf_keras' HDF5: keras_version 2.x
    for path in (tmp_path / "m.h5", tmp_path / "saved"):
        np.testing.assert_allclose(tfsparse.load_model(path)(x).numpy(), model(x).numpy(), atol=1e-6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="without saved_model.pb"):
        tfsparse.load_model(tmp_path / "empty")
