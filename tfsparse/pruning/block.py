"""Block pruning of 1x1 convolutions along output channels, inside TF-MOT.

Fast Sparse ConvNets (Elsen et al., 2019, arXiv:1911.09723) gets part of its speed
from non-zeros that come in blocks of 2 or 4 *output channels* at the same input
channel: one load of an input row then feeds 2 or 4 accumulators. XNNPACK has f32
SpMM micro-kernels for exactly that on arm64 (`src/configs/spmm-config.c`:
`f32_spmm_minmax_ukernel_32x1__neonfma_pipelined`, `32x2__aarch64_neonfma`,
`32x4__aarch64_neonfma`; fp16 has only the 32x1 kernel). It finds the blocks itself,
from the *densified* weight `[out][in]` (`create_spmm_path` in
`src/operators/convolution-nchw.c`): over aligned groups of 4 consecutive output
channels it counts non-zero groups, and takes the 4-wide kernel when those groups are
at least 90% full (`num_block4_nonzeroes * 5 >= num_nonzero_blocks4 * 18`), else the
2-wide kernel at the same 90% bar, else the 1-wide one. Nothing in the .tflite file
needs to be blocked: the converter's per-element CSR + DENSIFY is fine.

TF-MOT's `block_size` works only on rank-2 weights (`Pruning._validate_block`), so a
Conv2D kernel `(1, 1, in, out)` cannot be block-pruned. `BlockPrunableConv1x1` is a
1x1 convolution whose kernel *variable* is the rank-2 `(in, out)` matrix: TF-MOT's
`block_size=(1, b)` then pools `1 x b` blocks along output channels, the blocks
XNNPACK looks for. `plain_convs` turns the layers back into ordinary Conv2D layers
with identical outputs, so export and every other stage see a normal model.

In a recipe: `[pruning] block_size = [1, 4]` block-prunes the selected 1x1
convolutions; `block_layers = "<regex>"` restricts blocks to matching layers (e.g.
the last stage only), the other selected layers stay unstructured.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tfsparse.errors import UserError

layers = tf.keras.layers
sparsity = tfmot.sparsity.keras


@tf.keras.utils.register_keras_serializable(package="tfsparse")
class BlockPrunableConv1x1(layers.Layer, sparsity.PrunableLayer):
    """A 1x1, stride-1 convolution whose kernel variable is the `(in, out)` matrix.

    Same maths as `Conv2D(filters, 1)`; registered with Keras so pruning checkpoints
    that hold it load again (`--resume`).
    """

    def __init__(self, filters: int, use_bias: bool = False, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = tf.keras.initializers.get(kernel_initializer)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)
        self.kernel_regularizer = tf.keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = tf.keras.regularizers.get(bias_regularizer)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", shape=(channels, self.filters), initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, trainable=True)
        self.bias = (self.add_weight("bias", shape=(self.filters,), initializer=self.bias_initializer,
                                     regularizer=self.bias_regularizer, trainable=True) if self.use_bias else None)
        super().build(input_shape)

    def call(self, inputs):
        kernel = tf.reshape(self.kernel, (1, 1, *self.kernel.shape))
        outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding="VALID")
        return tf.nn.bias_add(outputs, self.bias) if self.use_bias else outputs

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.filters])

    def get_prunable_weights(self):
        return [self.kernel]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "use_bias": self.use_bias,
                "kernel_initializer": tf.keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": tf.keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": tf.keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": tf.keras.regularizers.serialize(self.bias_regularizer)}


def uses_blocks(config) -> bool:
    """True when the recipe's `[pruning]` asks for blocks bigger than 1x1."""
    return bool(config.block_size) and list(config.block_size) != [1, 1]


def why_not_convertible(layer) -> str | None:
    """None if `layer` is a 1x1 Conv2D that `BlockPrunableConv1x1` can stand in for, else why not."""
    if not isinstance(layer, layers.Conv2D) or isinstance(layer, (layers.DepthwiseConv2D, layers.Conv2DTranspose)):
        return f"is a {type(layer).__name__}, not a Conv2D"
    if tuple(layer.kernel_size) != (1, 1) or tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1):
        return f"has kernel {layer.kernel_size}, strides {layer.strides}, dilation {layer.dilation_rate} (need 1x1, 1, 1)"
    if layer.groups != 1 or layer.data_format != "channels_last":
        return "is grouped or channels_first"
    if layer.activation not in (None, tf.keras.activations.linear):
        return "has a fused activation (keep it in a separate layer)"
    return None


def from_conv2d(conv) -> BlockPrunableConv1x1:
    """A built `BlockPrunableConv1x1` with `conv`'s name and trained weights."""
    config = conv.get_config()  # serialised: fresh initializer objects, not the conv's (already called) ones
    layer = BlockPrunableConv1x1(conv.filters, use_bias=conv.use_bias, kernel_initializer=config["kernel_initializer"],
                                 bias_initializer=config["bias_initializer"],
                                 kernel_regularizer=config["kernel_regularizer"],
                                 bias_regularizer=config["bias_regularizer"], name=conv.name, dtype=conv.dtype_policy)
    kernel = conv.kernel.numpy()
    layer.build((None, None, None, kernel.shape[2]))
    layer.set_weights([kernel.reshape(kernel.shape[2], kernel.shape[3]), *[w.numpy() for w in conv.weights[1:]]])
    return layer


def to_conv2d(layer: BlockPrunableConv1x1):
    """The plain `Conv2D(filters, 1)` with `layer`'s name and weights (identical outputs)."""
    config = layer.get_config()
    conv = layers.Conv2D(layer.filters, 1, padding="valid", use_bias=layer.use_bias,
                         kernel_initializer=config["kernel_initializer"], bias_initializer=config["bias_initializer"],
                         kernel_regularizer=config["kernel_regularizer"], bias_regularizer=config["bias_regularizer"],
                         name=layer.name, dtype=layer.dtype_policy)
    kernel = layer.kernel.numpy()
    conv.build((None, None, None, kernel.shape[0]))
    conv.set_weights([kernel.reshape(1, 1, *kernel.shape), *[w.numpy() for w in layer.weights[1:]]])
    return conv


def prune_with_blocks(model, config, schedule, chosen: Callable) -> tf.keras.Model:
    """`model` with `chosen` layers wrapped by `prune_low_magnitude`, 1x1 convs in blocks.

    Chosen layers matching `config.block_layers` (all chosen 1x1 convolutions when it
    is unset) become `BlockPrunableConv1x1` pruned with `config.block_size`; chosen
    Dense layers (rank-2 already) take `block_size` natively; every other chosen layer
    is pruned element by element at the same schedule.
    """
    block_size = tuple(config.block_size)
    pattern = re.compile(config.block_layers) if config.block_layers else None
    matched = []

    def clone(layer):
        if not chosen(layer):
            return layer
        wanted = pattern is None or bool(pattern.search(layer.name))
        problem = why_not_convertible(layer)
        if wanted and problem is None:
            matched.append(layer.name)
            return sparsity.prune_low_magnitude(from_conv2d(layer), pruning_schedule=schedule, block_size=block_size)
        if wanted and isinstance(layer, layers.Dense):
            matched.append(layer.name)
            return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule, block_size=block_size)
        if pattern is not None and wanted:
            raise UserError(f"pruning.block_layers {config.block_layers!r} selects layer {layer.name!r}, which "
                            f"cannot be block-pruned: it {problem}")
        return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)

    pruned = tf.keras.models.clone_model(model, clone_function=clone)
    if not matched:
        raise UserError(f"pruning.block_size {list(block_size)}: no pruned layer can take blocks"
                        + (f" (pruning.block_layers {config.block_layers!r} matches none)" if pattern else ""))
    return pruned


def plain_convs(model) -> tf.keras.Model:
    """`model` with every `BlockPrunableConv1x1` replaced by the equivalent Conv2D (a no-op otherwise)."""
    if not any(isinstance(layer, BlockPrunableConv1x1) for layer in model.layers):
        return model
    return tf.keras.models.clone_model(
        model, clone_function=lambda layer: to_conv2d(layer) if isinstance(layer, BlockPrunableConv1x1) else layer)


def block_fill(kernel_out_in: np.ndarray, block: int) -> float:
    """How full XNNPACK finds the non-zero `block`-channel groups of a densified `[out, in]` weight.

    The fraction XNNPACK compares with 0.9 (`create_spmm_path`): non-zeros inside the
    aligned whole groups of `block` output channels / (non-zero groups * `block`).
    1.0 for a perfectly block-pruned kernel; about 1/block + ... for random zeros.
    """
    nonzero = np.asarray(kernel_out_in).reshape(kernel_out_in.shape[0], -1) != 0
    whole = nonzero[: nonzero.shape[0] // block * block].reshape(-1, block, nonzero.shape[1])
    groups = int(whole.any(axis=1).sum())
    return float(whole.sum()) / (groups * block) if groups else 0.0
