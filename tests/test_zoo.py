"""The zoo registry: every model builds, MobileNets satisfy XNNPACK's sparse rules."""

import re

import pytest
import tensorflow as tf

from tfsparse.pruning import magnitude as pruning
from tfsparse.cli import UserError
from tfsparse.recipe import PruningConfig
from tfsparse.zoo import create_model, list_models

IMAGE = {"width_multiplier": 0.25, "input_size": 32, "num_classes": 7}
# A small configuration of every registered model (the registry test below keeps this complete).
SMALL = {
    "mobilenet_v1": {**IMAGE, "depth": 4}, "mobilenet_v2": {**IMAGE, "stages": 3},
    "inception": {**IMAGE, "modules": 2},
    "ds_cnn": {"num_frames": 20, "num_mel_bins": 10, "num_classes": 7, "filters": 16, "blocks": 2},
    "sparse_autoencoder": {"input_dim": 10, "hidden_units": 16, "code_dim": 8},
    "policy_net": {"num_states": 16, "hidden_units": 8, "num_classes": 4},
    "text_classifier": {"vocab_size": 50, "sequence_length": 12, "embedding_dim": 8, "hidden_units": 8,
                        "num_classes": 5},
    "splade_encoder": {"vocab_size": 50, "embedding_dim": 8},
    "q_network": {"num_states": 16, "hidden_units": 8, "num_classes": 4},
}
IMAGE_MODELS = ["inception", "mobilenet_v1", "mobilenet_v2"]
XNNPACK_READY = {"mobilenet_v1", "mobilenet_v2"}


def test_registry_is_complete():
    assert set(list_models()) == set(SMALL), "a registered model lacks a test configuration here"


@pytest.mark.parametrize("name", list_models())
def test_builds_with_explicit_layer_names(name):
    model = create_model(name, **SMALL[name])
    if "num_classes" in SMALL[name]:
        assert model.output_shape == (None, SMALL[name]["num_classes"])
    if name in IMAGE_MODELS:
        assert model.input_shape == (None, 32, 32, 3)
    auto_named = [layer.name for layer in model.layers
                  if layer.name.split("_")[0] in ("conv2d", "dense", "batch", "re", "zero", "depthwise")]
    assert not auto_named, f"layers without explicit names: {auto_named[:3]}"
    # XNNPACK: a CONV_2D without bias is not delegated; every conv is followed by BN (folded into a bias).
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.Conv2D) and not layer.use_bias:
            assert model.get_layer(layer.name.replace("_conv", "_bn").replace("_dw", "_dw_bn"))


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_xnnpack_policy_verdict(name):
    model = create_model(name, **SMALL[name])
    config = PruningConfig(policy="xnnpack")
    if name in XNNPACK_READY:
        pruning.check_policy(model, config)  # raises if TF-MOT's PruneForLatencyOnXNNPack rejects it
        pruned = pruning.apply_pruning(model, config, pruning.one_shot_schedule(config))
        names = pruning.pruned_layer_names(pruned)
        assert names and all(model.get_layer(n).kernel_size == (1, 1) for n in names)
    else:
        with pytest.raises(UserError) as verdict:
            pruning.check_policy(model, config)
        named = re.search(r"layer '(\w+)' \((\w+)\)", str(verdict.value))
        assert named, verdict.value
        # The earliest layer after the stem (model order) that XNNPACK cannot run, every run:
        # TF-MOT's own walk popped layers from a set and named whichever came first in memory.
        policy = pruning.XNNPackPolicy()
        start = next(i for i, layer in enumerate(model.layers) if policy._start_layer_stop_fn(layer))
        earliest = next(layer for layer in model.layers[start + 1:] if not policy._check_layer_support(layer))
        assert (named[1], named[2]) == (earliest.name, type(earliest).__name__), verdict.value
        with pytest.raises(UserError) as again:
            pruning.check_policy(create_model(name, **SMALL[name]), config)
        assert str(again.value) == str(verdict.value)


def test_stride_two_layers_pad_explicitly():
    model = create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
    for layer in model.layers:
        if getattr(layer, "strides", (1, 1)) == (2, 2):
            assert layer.padding == "valid"
            producer = layer.inbound_nodes[0].inbound_layers
            assert isinstance(producer, tf.keras.layers.ZeroPadding2D)
            assert producer.padding == ((1, 1), (1, 1))


def test_unknown_model_suggests_close_matches():
    with pytest.raises(UserError, match=r"did you mean mobilenet_v[12] or mobilenet_v[12]\?"):
        create_model("mobilenet_v3")
    with pytest.raises(UserError, match="has no argument 'alpha'"):
        create_model("mobilenet_v1", alpha=0.5)
    with pytest.raises(UserError, match="width_multiplier must be in"):
        create_model("mobilenet_v1", width_multiplier=0)
