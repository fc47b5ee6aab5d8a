"""Tiny Keras graphs that exercise XNNPACK's sparse-cluster rules, converted to TFLite.

Each graph has random weights; the 1x1 convolution kernels (and, where stated, Dense
kernels) get an exact fraction of zeros with numpy, so no training is needed. Inputs are
32x32x3 with a handful of channels: building and converting all of them takes seconds.

    from tests.graphs import GRAPHS, build_tflite
    data = build_tflite("mobilenet")            # bytes, cached per process
    GRAPHS["mobilenet"].verdict                 # "sparse": what XNNPACK on arm64 should do

The same graphs are built at `TIMED` scale (8x the channels, so the 1x1 convolutions are
most of the work) for timing on the emulated arm64 runtime, each with its dense twin
(`tfsparse.tflite.twin.dense_twin`: the sparse file's weights stored dense, as `tfsparse.benchmarking.bench`
times it).

    twin, sparse = timed_pair("mobilenet")      # bytes: no DENSIFY vs sparse-aware
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

import tfsparse  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads

SEED = 0


@dataclass(frozen=True)
class Scale:
    """Input side and channel multiplier of a graph. Every channel count and unit count is
    multiplied by `width`, so each cluster's share of 1x1/Dense weights (and hence every
    verdict that depends on a zero fraction) is the same at every scale."""

    size: int = 32
    width: int = 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, 3)

    def ch(self, channels: int) -> int:
        return channels * self.width


SMALL = Scale()                    # the inspector tests: builds and converts in seconds
# Timing on emulated arm64: the 1x1 convs are ~85% of the multiply-adds (4.2M of 4.9M for
# "mobilenet"); measured ~100-200 ms a dense fp32 inference under qemu on a loaded machine.
TIMED = Scale(size=32, width=8)


@dataclass(frozen=True)
class GraphSpec:
    """How to build one graph and what the XNNPACK rules should say about it."""

    build: Callable  # (Scale) -> tf.keras.Model, with its 1x1 kernels already zeroed
    variant: str     # "fp32", "fp16", "int8-dynamic" or "int8" (full-integer)
    verdict: str     # expected verdict on arm64: "sparse" or "dense"
    why: str         # what the graph is for / the reason the verdict must mention
    loads: bool = True  # False: LiteRT 2.3.0's default XNNPACK delegate fails at allocate_tensors
    # Set where LiteRT 2.3.0 on arm64 (emulated) fails at allocate_tensors: part of its message.
    arm64_error: str | None = None


def _layers():
    import tensorflow as tf

    return tf.keras.layers


def _stem(x, s: Scale, same: bool = False):
    L = _layers()
    if same:
        x = L.Conv2D(s.ch(8), 3, strides=2, padding="same")(x)
    else:
        x = L.ZeroPadding2D(((1, 1), (1, 1)))(x)
        x = L.Conv2D(s.ch(8), 3, strides=2, padding="valid")(x)
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


def _backbone(inp, s: Scale, same: bool = False):
    x = _stem(inp, s, same)
    x = _block(x, s.ch(16), 1, same)
    return _block(x, s.ch(32), 2, same)


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


def _mobilenet(s: Scale, fraction: float = 0.9, same: bool = False, head_units: tuple[int, ...] = (10,)):
    L = _layers()
    inp = L.Input(s.input_shape)
    x = L.GlobalAveragePooling2D()(_backbone(inp, s, same))
    for units in head_units:
        x = L.Dense(s.ch(units))(x)
    return prune_pointwise(_model(inp, x), fraction)


def _mean_keepdims_head(s: Scale, dense_head: bool = True):
    # Backbone 1x1s: 8*16 + 16*32 = 640 weights, 90% zero; the 1x1-conv head adds 32*10 = 320
    # dense weights to the cluster, so the cluster is 60% zero: under XNNPACK's 2/3
    # (at width w: 640w^2 and 320w^2, the same 60%).
    L = _layers()
    inp = L.Input(s.input_shape)
    x = L.GlobalAveragePooling2D(keepdims=True)(_backbone(inp, s))
    head = L.Conv2D(s.ch(10), 1, name="head")(x)
    model = _model(inp, L.Flatten()(head))
    prune_pointwise(model, 0.9)
    if not dense_head:  # the head keeps prune_pointwise's 90% zeros: the cluster is 90% zero
        return model
    weights = model.get_layer("head").get_weights()
    weights[0] = np.random.default_rng(SEED).uniform(0.1, 1.0, weights[0].shape).astype(np.float32)
    model.get_layer("head").set_weights(weights)
    return model


def _squeeze_excite(s: Scale):
    L = _layers()
    inp = L.Input(s.input_shape)
    x = _backbone(inp, s)
    se = L.GlobalAveragePooling2D(keepdims=True)(x)
    se = L.Conv2D(s.ch(8), 1, activation="relu")(se)
    se = L.Conv2D(s.ch(32), 1, activation="sigmoid")(se)
    x = L.Multiply()([x, se])
    x = L.Dense(s.ch(10))(L.GlobalAveragePooling2D()(x))
    return prune_pointwise(_model(inp, x), 0.9)


def _constant_second_mul(s: Scale):
    import tensorflow as tf

    L = _layers()
    inp = L.Input(s.input_shape)
    scale = tf.constant(np.random.default_rng(SEED).uniform(0.5, 1.5, (1, 1, 1, s.ch(32))).astype(np.float32))
    x = L.Lambda(lambda t: t * scale)(_backbone(inp, s))  # after ReLU6, so the converter cannot fold it
    x = L.Dense(s.ch(10))(L.GlobalAveragePooling2D()(x))
    return prune_pointwise(_model(inp, x), 0.9)


def _truncated_cluster(s: Scale):
    # Branch A ends in a global average pool (a proper end). Branch B has no end: its last
    # 1x1 feeds a Flatten, so XNNPACK runs B channel-first and Flatten reads NCHW data.
    # Two inputs, because the converter merges identical PAD ops on one input into a PAD with
    # two consumers, which XNNPACK cannot fold.
    L = _layers()
    in_a, in_b = L.Input(s.input_shape), L.Input(s.input_shape)
    a = L.Dense(s.ch(10))(L.GlobalAveragePooling2D()(_backbone(in_a, s)))
    b = _block(_stem(in_b, s), s.ch(16), 1)
    b = L.Dense(4)(L.Flatten()(b))
    return prune_pointwise(_model([in_a, in_b], [a, b]), 0.9)


def _wide_pointwise(s: Scale):
    # Dynamic-range quantization leaves tensors under 1024 weights in float: 64x64 1x1s are int8.
    L = _layers()
    inp = L.Input(s.input_shape)
    x = _stem(inp, s)
    x = L.Conv2D(s.ch(64), 1, activation="relu")(L.Conv2D(s.ch(64), 1, activation="relu")(x))
    return prune_pointwise(_model(inp, L.GlobalAveragePooling2D()(x)), 0.9)


GRAPHS: dict[str, GraphSpec] = {
    "mobilenet": GraphSpec(_mobilenet, "fp32", "sparse",
                           "ZeroPadding2D(1) + valid stride-2 stem, depthwise/1x1 blocks, GAP + Dense, 1x1s 90% zero"),
    "mobilenet_fp16": GraphSpec(_mobilenet, "fp16", "sparse", "fp16 weights: DENSIFY -> DEQUANTIZE"),
    "same_stride2": GraphSpec(lambda s: _mobilenet(s, same=True), "fp32", "dense",
                              "SAME-padded stride-2 stem and depthwise"),
    "mean_keepdims_head": GraphSpec(_mean_keepdims_head, "fp32", "dense",
                                    "MEAN(keepdims) + 1x1-conv head pulled into the cluster: 60% zero"),
    "mean_keepdims_sparse_head": GraphSpec(lambda s: _mean_keepdims_head(s, dense_head=False), "fp32", "sparse",
                                           "MEAN(keepdims) + 1x1-conv head, head 90% zero too: the cluster "
                                           "runs sparse, which LiteRT 2.3.0 on arm64 cannot allocate",
                                           arm64_error="XNNPack delegate failed to reshape runtime"),
    "gap_dense": GraphSpec(lambda s: _mobilenet(s, head_units=(64, 10)), "fp32", "sparse",
                           "GAP + a large dense Dense head that stays outside the cluster"),
    "below_threshold": GraphSpec(lambda s: _mobilenet(s, fraction=0.5), "fp32", "dense",
                                 "1x1s 50% zero: encoded sparse (>= 30%) but under XNNPACK's 2/3"),
    "squeeze_excite": GraphSpec(_squeeze_excite, "fp32", "sparse",
                                "MEAN(keepdims) -> 1x1 -> 1x1 -> sigmoid -> MUL stays in the cluster"),
    "int8": GraphSpec(_mobilenet, "int8", "dense", "full-integer int8: the sparse path is fp32/fp16 only"),
    "unpruned": GraphSpec(lambda s: _mobilenet(s, fraction=0.0), "fp32", "dense", "no zeros: no sparse tensor"),
    "const_second_mul": GraphSpec(_constant_second_mul, "fp32", "dense",
                                  "MUL(x, const[1,1,1,C]): XNNPACK bug (a) breaks the cluster"),
    "int8_dynamic": GraphSpec(_wide_pointwise, "int8-dynamic", "dense",
                              "int8 dynamic-range weights stored sparse: the delegate fails to prepare",
                              loads=False, arm64_error="failed to delegate CONV_2D"),
    "truncated_cluster": GraphSpec(_truncated_cluster, "fp32", "sparse",
                                   "a cluster without an end node: XNNPACK bug (b), wrong results"),
}


def _representative_data(input_shape: tuple[int, ...]):
    def batches():
        rng = np.random.default_rng(SEED)
        for _ in range(4):
            yield [rng.uniform(0, 1, (1, *input_shape)).astype(np.float32)]  # graphs with one input only
    return batches


def build_keras(name: str, scale: Scale = SMALL):
    """The Keras model of graph `name` at `scale`, rebuilt deterministically."""
    import tensorflow as tf

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(SEED)
    return GRAPHS[name].build(scale)


def convert(model, variant: str, sparse: bool = True) -> bytes:
    """`tfsparse.convert` (the conversion the export stage uses) with Optimize.EXPERIMENTAL_SPARSITY
    (+ fp16, int8 dynamic-range or full-integer int8, calibrated on seeded random inputs).

    `sparse=False` leaves EXPERIMENTAL_SPARSITY out: the weights (zeros included) are stored
    dense, so there is no DENSIFY and XNNPACK is never asked for sparse inference."""
    from tfsparse.exporting.converter import convert as tfsparse_convert

    data = _representative_data(tuple(model.inputs[0].shape[1:])) if variant == "int8" else None
    return tfsparse_convert(model, variant, sparse=sparse, representative_data=data)


@functools.lru_cache(maxsize=None)
def build_tflite(name: str) -> bytes:
    """Graph `name` converted to a sparse-aware .tflite (cached for the process)."""
    return convert(build_keras(name), GRAPHS[name].variant)


@functools.lru_cache(maxsize=None)
def timed_pair(name: str, scale: Scale = TIMED) -> tuple[bytes, bytes]:
    """(dense twin, sparse-aware) .tflite of graph `name` at `scale`.

    The twin has the same weights (zeros included) but no sparse tensors, so it takes
    XNNPACK's dense path whatever the graph: twin/sparse time is the sparse path's speedup."""
    from tfsparse.tflite.twin import dense_twin

    sparse = convert(build_keras(name, scale), GRAPHS[name].variant)
    return dense_twin(sparse), sparse


def _single_pointwise(zeros: int):
    """Stem -> depthwise -> one 1x1 conv (8 -> 12, 96 weights) -> GAP, with exactly `zeros` zeros."""
    L = _layers()
    inp = L.Input(SMALL.input_shape)
    x = _block(_stem(inp, SMALL), 12, 1)
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
