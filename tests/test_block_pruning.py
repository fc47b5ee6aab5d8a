"""Block pruning of 1x1 convolutions and 2:4 through TF-MOT, the converter and the inspector.

Real TensorFlow, TF-MOT and TFLite converter; a 4-block x0.25 MobileNetV1 at 32x32.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

import tfsparse  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tfsparse.cli import UserError
from tfsparse.pruning import block as block_pruning
from tfsparse.pruning import magnitude as pruning
from tfsparse.recipe import PruningConfig, load_recipe
from tfsparse.tflite.inspector import block_structure, inspect_bytes
from tfsparse.zoo import create_model

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "models" / "mobilenet_v1.toml"
PW = [f"block{i}_pw_conv" for i in range(1, 5)]


def tiny_model():
    tf.keras.utils.set_random_seed(0)
    return create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, depth=4, num_classes=10)


def prune(model, config, target=0.9):
    """Wraps with `apply_pruning`, runs two training steps (masks set at step 1), strips."""
    schedule = tfmot.sparsity.keras.ConstantSparsity(target, begin_step=1, end_step=1, frequency=1)
    pruned = pruning.apply_pruning(model, config, schedule)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, 32)
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    return pruned, pruning.strip(pruned), x


def out_in(kernel):
    """A Keras 1x1 kernel (1, 1, in, out) as the [out, in] matrix XNNPACK scans."""
    return np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)


def convert(model, sparse=True) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    return converter.convert()


@pytest.mark.parametrize("use_bias", [False, True])
def test_rank2_layer_round_trips_to_an_identical_conv2d(use_bias):
    inputs = tf.keras.Input((6, 6, 8))
    conv = tf.keras.layers.Conv2D(12, 1, use_bias=use_bias, bias_initializer="random_normal", name="pw")
    model = tf.keras.Model(inputs, conv(inputs))
    x = np.random.default_rng(1).random((2, 6, 6, 8), dtype=np.float32)
    block = block_pruning.from_conv2d(conv)
    assert block.kernel.shape == (8, 12) and block.name == "pw"
    np.testing.assert_allclose(block(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    back = block_pruning.to_conv2d(block)
    assert isinstance(back, tf.keras.layers.Conv2D) and back.kernel.shape == (1, 1, 8, 12)
    np.testing.assert_array_equal(back(x).numpy(), block(x).numpy())


def test_block4_prunes_whole_output_channel_groups_and_strips_to_conv2d():
    config = PruningConfig(block_size=[1, 4], exclude="^block1_pw_conv$")
    pruned, stripped, x = prune(tiny_model(), config)
    assert pruning.pruned_layer_names(pruned) == PW[1:]
    assert all(type(layer) is tf.keras.layers.Conv2D for layer in stripped.layers if layer.name in PW)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)
    for name in PW[1:]:
        kernel = out_in(stripped.get_layer(name).kernel.numpy())
        assert abs(np.mean(kernel == 0) - 0.9) < 0.02, name
        assert block_structure(kernel)["output_channel_block"] >= 4, name
        # XNNPACK's own test: kept 4-channel groups >= 90% full -> its 4-wide SpMM kernel.
        assert block_pruning.block_fill(kernel, 4) == 1.0
    # The excluded layer keeps its dense weights.
    assert np.mean(stripped.get_layer("block1_pw_conv").kernel.numpy() == 0) == 0


def test_block_layers_limits_blocks_and_the_rest_stays_unstructured():
    config = PruningConfig(block_size=[1, 2], block_layers="^block4_pw_conv$")
    _, stripped, _ = prune(tiny_model(), config)
    blocked = out_in(stripped.get_layer("block4_pw_conv").kernel.numpy())
    loose = out_in(stripped.get_layer("block3_pw_conv").kernel.numpy())
    assert block_structure(blocked)["output_channel_block"] >= 2
    assert block_structure(loose)["output_channel_block"] == 1
    assert abs(np.mean(loose == 0) - 0.9) < 0.02
    # Random 90% zeros: kept 2-groups are far below XNNPACK's 90% bar (about 1/2 + 1/20).
    assert block_pruning.block_fill(loose, 2) < 0.7


def test_block_pruned_file_is_sparse_for_xnnpack_and_the_inspector_sees_the_blocks():
    _, stripped, x = prune(tiny_model(), PruningConfig(block_size=[1, 4], exclude="^block1_pw_conv$"))
    report = inspect_bytes(convert(stripped))
    assert report["xnnpack"]["sparse_clusters"], report["xnnpack"]["reasons"]
    blocks = [t["block_structure"]["output_channel_block"] for t in report["sparse_tensors"]]
    assert len(blocks) == 3 and min(blocks) >= 4, blocks


def test_two_of_four_is_50_percent_and_below_xnnpacks_two_thirds_bar():
    _, stripped, _ = prune(tiny_model(), PruningConfig(sparsity_m_by_n=[2, 4], exclude="^block1_pw_conv$"))
    for name in PW[1:]:
        kernel = out_in(stripped.get_layer(name).kernel.numpy())
        assert np.mean(kernel == 0) == 0.5
        assert block_structure(kernel)["n_m"] == "2:4"
    report = inspect_bytes(convert(stripped))
    # >= 30% zeros: stored sparse behind DENSIFY; but 50% < 2/3, so XNNPACK runs the cluster dense.
    assert report["densify_ops"] == 3
    assert not report["xnnpack"]["sparse_clusters"]


def test_pruning_checkpoint_with_block_layers_loads_again(tmp_path):
    pruned, _, x = prune(tiny_model(), PruningConfig(block_size=[1, 4]))
    pruned.save(tmp_path / "ckpt.keras")
    with tfmot.sparsity.keras.prune_scope():
        loaded = tf.keras.models.load_model(tmp_path / "ckpt.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)


def test_block_layers_naming_an_unfit_layer_is_a_user_error():
    config = PruningConfig(policy="block[34]_(pw_conv|dw)$", block_size=[1, 4], block_layers="_dw$")
    with pytest.raises(UserError, match="block3_dw.*cannot be block-pruned"):
        prune(tiny_model(), config)
    with pytest.raises(UserError, match="matches none"):
        prune(tiny_model(), PruningConfig(block_size=[1, 4], block_layers="^nothing$"))


def test_recipe_checks_block_layers(tmp_path):
    with pytest.raises(UserError, match="block_layers needs pruning.block_size"):
        load_recipe(RECIPE, ["pruning.block_layers='pw'"])
    with pytest.raises(UserError, match="not a valid regex"):
        load_recipe(RECIPE, ["pruning.block_size=[1, 4]", "pruning.block_layers='('"])
    assert load_recipe(RECIPE, ["pruning.block_size=[1, 4]", "pruning.block_layers='^block1[23]'"]
                       ).pruning.block_layers == "^block1[23]"


def test_train_cli_block4_end_to_end(tmp_path):
    """`python -m tfsparse.train --set pruning.block_size=[1,4]`: blocks survive the whole run."""
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "tfsparse.train", str(RECIPE), "--out", str(run), "--epochs", "1",
         "--max-train-examples", "256", "--quiet", "--set", "model.width_multiplier=0.25", "--set", "model.depth=4",
         "--set", "train.batch_size=64", "--set", "data.validation_examples=256",
         "--set", "pruning.block_size=[1, 4]", "--set", "train.equal_epochs_dense=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sparse = tf.keras.models.load_model(run / "sparse.keras", compile=False)
    for name in PW[1:]:
        kernel = out_in(sparse.get_layer(name).kernel.numpy())
        assert abs(np.mean(kernel == 0) - 0.9) < 0.02
        assert block_structure(kernel)["output_channel_block"] >= 4


def test_structure_study_plans_each_pattern_per_sparsity_and_2of4_once():
    from tfsparse.experiments.structure_study import parse_args, plan

    runs = plan(["unstructured", "block4", "2:4"], [0.8, 0.9])
    assert [r["name"] for r in runs] == ["unstructured_80", "unstructured_90", "block4_80", "block4_90", "2of4_50"]
    assert "pruning.block_size=[1, 4]" in runs[3]["set"] and "pruning.final_sparsity=0.9" in runs[3]["set"]
    assert "pruning.sparsity_m_by_n=[2, 4]" in runs[-1]["set"]
    with pytest.raises(SystemExit):
        parse_args(["models/mobilenet_v1.toml", "--patterns", "block3"])
