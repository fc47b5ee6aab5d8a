"""Tiny Keras graphs that exercise XNNPACK's sparse-cluster rules, converted to TFLite.

Each graph has random weights; the 1x1 convolution kernels (and, where stated, Dense
kernels) get an exact fraction of zeros with numpy, so no training is needed. Inputs are
32x32x3 with a handful of channels: building and converting all of them takes seconds.

    from tests.graphs import GRAPHS, build_tflite
    data = build_tflite("mobilenet")            # bytes, cached per process
    GRAPHS["mobilenet"].verdict                 # "sparse": what XNNPACK on arm64 should do

The arm64 benchmark reuses these to check each predicted verdict against the emulated runtime.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

import tfsparse  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads

INPUT_SHAPE = (32, 32, 3)
SEED = 0


@dataclass(frozen=True)
class GraphSpec:
    """How to build one graph and what the XNNPACK rules should say about it."""

    build: Callable  # () -> tf.keras.Model, with its 1x1 kernels already zeroed
    variant: str     # "fp32", "fp16", "int8-dynamic" or "int8" (full-integer)
    verdict: str     # expected verdict on arm64: "sparse" or "dense"
    why: str         # what the graph is for / the reason the verdict must mention
    loads: bool = True  # False: LiteRT 2.3.0's default XNNPACK delegate fails at allocate_tensors


def _layers():
    import tensorflow as tf

    return tf.keras.layers


def _stem(x, same: bool = False):
    L = _layers()
    if same:
        x = L.Conv2D(8, 3, strides=2, padding="same")(x)
    else:
        x = L.ZeroPadding2D(((1, 1), (1, 1)))(x)
        x = L.Conv2D(8, 3, strides=2, padding="valid")(x)
    return L.ReLU(6.0)(x)


def _block(x, filters: int, stride: int, same: bool = False):
    """Depthwise 3x3 + pointwise 1x1 (MobileNetV1), eligible unless `same` at stride 2."""
    L = _layers()
    if stride == 2 and not same:
        x = L.ZeroPadding2D(((1, 1), (1, 1)))(x)
        x = L.DepthwiseConv2D(3, strides=2, padding="valid")(x)
    else:
        x = L.DepthwiseConv2D(3, strides=stride, padding="same")(x)
    x = L.ReLU(6.0)(x)
    x = L.Conv2D(filters, 1)(x)
    return L.ReLU(6.0)(x)


def _backbone(inp, same: bool = False):
    x = _stem(inp, same)
    x = _block(x, 16, 1, same)
    return _block(x, 32, 2, same)


def _model(inputs, outputs):
    import tensorflow as tf

    return tf.keras.Model(inputs, outputs)


def prune_pointwise(model, fraction: float, dense_too: bool = False, seed: int = SEED):
    """Zeros exactly round(fraction * size) entries of every 1x1 conv (and Dense) kernel."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        is_pointwise = isinstance(layer, tf.keras.layers.Conv2D) and not isinstance(
            layer, tf.keras.layers.DepthwiseConv2D) and tuple(layer.kernel_size) == (1, 1)
        is_dense = dense_too and isinstance(layer, tf.keras.layers.Dense)
        if not (is_pointwise or is_dense):
            continue
        weights = layer.get_weights()
        kernel = weights[0].reshape(-1)
        kernel[rng.permutation(kernel.size)[:round(fraction * kernel.size)]] = 0.0
        weights[0] = kernel.reshape(weights[0].shape)
        layer.set_weights(weights)
    return model


def _mobilenet(fraction: float = 0.9, same: bool = False, head_units: tuple[int, ...] = (10,)):
    L = _layers()
    inp = L.Input(INPUT_SHAPE)
    x = L.GlobalAveragePooling2D()(_backbone(inp, same))
    for units in head_units:
        x = L.Dense(units)(x)
    return prune_pointwise(_model(inp, x), fraction)


def _mean_keepdims_head():
    # Backbone 1x1s: 8*16 + 16*32 = 640 weights, 90% zero; the 1x1-conv head adds 32*10 = 320
    # dense weights to the cluster, so the cluster is 60% zero: under XNNPACK's 2/3.
    L = _layers()
    inp = L.Input(INPUT_SHAPE)
    x = L.GlobalAveragePooling2D(keepdims=True)(_backbone(inp))
    head = L.Conv2D(10, 1, name="head")(x)
    model = _model(inp, L.Flatten()(head))
    prune_pointwise(model, 0.9)
    weights = model.get_layer("head").get_weights()
    weights[0] = np.random.default_rng(SEED).uniform(0.1, 1.0, weights[0].shape).astype(np.float32)
    model.get_layer("head").set_weights(weights)
    return model


def _squeeze_excite():
    L = _layers()
    inp = L.Input(INPUT_SHAPE)
    x = _backbone(inp)
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(8, 1, activation="relu")(s)
    s = L.Conv2D(32, 1, activation="sigmoid")(s)
    x = L.Multiply()([x, s])
    x = L.Dense(10)(L.GlobalAveragePooling2D()(x))
    return prune_pointwise(_model(inp, x), 0.9)


def _constant_second_mul():
    import tensorflow as tf

    L = _layers()
    inp = L.Input(INPUT_SHAPE)
    scale = tf.constant(np.random.default_rng(SEED).uniform(0.5, 1.5, (1, 1, 1, 32)).astype(np.float32))
    x = L.Lambda(lambda t: t * scale)(_backbone(inp))  # after ReLU6, so the converter cannot fold it
    x = L.Dense(10)(L.GlobalAveragePooling2D()(x))
    return prune_pointwise(_model(inp, x), 0.9)


def _truncated_cluster():
    # Branch A ends in a global average pool (a proper end). Branch B has no end: its last
    # 1x1 feeds a Flatten, so XNNPACK runs B channel-first and Flatten reads NCHW data.
    # Two inputs, because the converter merges identical PAD ops on one input into a PAD with
    # two consumers, which XNNPACK cannot fold.
    L = _layers()
    in_a, in_b = L.Input(INPUT_SHAPE), L.Input(INPUT_SHAPE)
    a = L.Dense(10)(L.GlobalAveragePooling2D()(_backbone(in_a)))
    b = _block(_stem(in_b), 16, 1)
    b = L.Dense(4)(L.Flatten()(b))
    return prune_pointwise(_model([in_a, in_b], [a, b]), 0.9)


def _wide_pointwise():
    # Dynamic-range quantization leaves tensors under 1024 weights in float: 64x64 1x1s are int8.
    L = _layers()
    inp = L.Input(INPUT_SHAPE)
    x = _stem(inp)
    x = L.Conv2D(64, 1, activation="relu")(L.Conv2D(64, 1, activation="relu")(x))
    return prune_pointwise(_model(inp, L.GlobalAveragePooling2D()(x)), 0.9)


GRAPHS: dict[str, GraphSpec] = {
    "mobilenet": GraphSpec(_mobilenet, "fp32", "sparse",
                           "ZeroPadding2D(1) + valid stride-2 stem, depthwise/1x1 blocks, GAP + Dense, 1x1s 90% zero"),
    "mobilenet_fp16": GraphSpec(_mobilenet, "fp16", "sparse", "fp16 weights: DENSIFY -> DEQUANTIZE"),
    "same_stride2": GraphSpec(lambda: _mobilenet(same=True), "fp32", "dense",
                              "SAME-padded stride-2 stem and depthwise"),
    "mean_keepdims_head": GraphSpec(_mean_keepdims_head, "fp32", "dense",
                                    "MEAN(keepdims) + 1x1-conv head pulled into the cluster: 60% zero"),
    "gap_dense": GraphSpec(lambda: _mobilenet(head_units=(64, 10)), "fp32", "sparse",
                           "GAP + a large dense Dense head that stays outside the cluster"),
    "below_threshold": GraphSpec(lambda: _mobilenet(fraction=0.5), "fp32", "dense",
                                 "1x1s 50% zero: encoded sparse (>= 30%) but under XNNPACK's 2/3"),
    "squeeze_excite": GraphSpec(_squeeze_excite, "fp32", "sparse",
                                "MEAN(keepdims) -> 1x1 -> 1x1 -> sigmoid -> MUL stays in the cluster"),
    "int8": GraphSpec(_mobilenet, "int8", "dense", "full-integer int8: the sparse path is fp32/fp16 only"),
    "unpruned": GraphSpec(lambda: _mobilenet(fraction=0.0), "fp32", "dense", "no zeros: no sparse tensor"),
    "const_second_mul": GraphSpec(_constant_second_mul, "fp32", "dense",
                                  "MUL(x, const[1,1,1,C]): XNNPACK bug (a) breaks the cluster"),
    "int8_dynamic": GraphSpec(_wide_pointwise, "int8-dynamic", "dense",
                              "int8 dynamic-range weights stored sparse: the delegate fails to prepare",
                              loads=False),
    "truncated_cluster": GraphSpec(_truncated_cluster, "fp32", "sparse",
                                   "a cluster without an end node: XNNPACK bug (b), wrong results"),
}


def _representative_data():
    rng = np.random.default_rng(SEED)
    for _ in range(4):
        yield [rng.uniform(0, 1, (1, *INPUT_SHAPE)).astype(np.float32)]  # graphs with one input only


def build_keras(name: str):
    """The Keras model of graph `name`, rebuilt deterministically."""
    import tensorflow as tf

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(SEED)
    return GRAPHS[name].build()


def convert(model, variant: str) -> bytes:
    """TFLiteConverter with Optimize.EXPERIMENTAL_SPARSITY (+ fp16, int8 dynamic-range or full-integer int8)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if variant == "fp16":
        converter.optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8-dynamic":
        converter.optimizations.append(tf.lite.Optimize.DEFAULT)
    elif variant == "int8":
        converter.optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.representative_dataset = _representative_data
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


@functools.lru_cache(maxsize=None)
def build_tflite(name: str) -> bytes:
    """Graph `name` converted to a sparse-aware .tflite (cached for the process)."""
    return convert(build_keras(name), GRAPHS[name].variant)


def _single_pointwise(zeros: int):
    """Stem -> depthwise -> one 1x1 conv (8 -> 12, 96 weights) -> GAP, with exactly `zeros` zeros."""
    L = _layers()
    inp = L.Input(INPUT_SHAPE)
    x = _block(_stem(inp), 12, 1)
    model = _model(inp, L.GlobalAveragePooling2D()(x))
    return prune_pointwise(model, zeros / 96)


@functools.lru_cache(maxsize=None)
def pointwise_tflite(zeros: int) -> bytes:
    """A one-cluster graph whose only 1x1 kernel (96 weights) has exactly `zeros` zeros: for
    testing XNNPACK's strict `zeros * 3 > params * 2` rule at its boundary (64 of 96)."""
    import tensorflow as tf

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(SEED)
    return convert(_single_pointwise(zeros), "fp32")
