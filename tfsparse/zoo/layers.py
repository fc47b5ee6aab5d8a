"""Building blocks that keep a network on XNNPACK's sparse (NCHW) path.

XNNPACK's rules (shared notes, section 4) shape every block here:
- stride-2 layers are `ZeroPadding2D(1)` + `padding="valid"`: TF's "same" pads
  asymmetrically at stride 2 (0,1,0,1), which XNNPACK cannot fold, and breaks the
  sparse cluster;
- the stem is a 3x3 stride-2 convolution on exactly 3 input channels;
- convolutions keep a bias after conversion (batch norm folds into it): a
  CONV_2D without bias is not delegated.
"""

from __future__ import annotations

import tensorflow as tf

layers = tf.keras.layers

# Keras' default 0.99 needs hundreds of steps before the inference-time statistics
# are usable: a short or smoke run then scores chance accuracy although it trained.
# 0.9 (PyTorch's default) settles in tens of steps and costs nothing on long runs.
BN_MOMENTUM = 0.9


def image_input(width_multiplier: float, input_size: int, depth: int, max_depth: int, depth_name: str):
    """Checks the arguments every image family shares; returns the NHWC 3-channel input."""
    if not 0 < width_multiplier <= 4:
        raise ValueError(f"width_multiplier must be in (0, 4], got {width_multiplier}")
    if input_size < 8:
        raise ValueError(f"input_size must be >= 8, got {input_size}")
    if not 1 <= depth <= max_depth:
        raise ValueError(f"{depth_name} must be in [1, {max_depth}], got {depth}")
    return tf.keras.Input((input_size, input_size, 3), name="image")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Channel count rounded to a multiple of `divisor`, never 10% below `value`.

    From the MobileNetV2 reference code: SIMD kernels (and XNNPACK's SpMM
    micro-kernels) work on channel groups, so round counts are faster.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_bn_relu(x, filters: int, kernel_size: int, stride: int, name: str, activation: bool = True):
    """Conv -> BN -> ReLU6 with XNNPACK-friendly explicit padding."""
    if kernel_size > 1:
        pad = kernel_size // 2
        x = layers.ZeroPadding2D(((pad, pad), (pad, pad)), name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel_size, strides=stride, padding="valid", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    if activation:
        x = layers.ReLU(6.0, name=f"{name}_relu")(x)
    return x


def depthwise_bn_relu(x, stride: int, name: str):
    """3x3 depthwise (multiplier 1) -> BN -> ReLU6, padded explicitly."""
    x = layers.ZeroPadding2D(((1, 1), (1, 1)), name=f"{name}_pad")(x)
    x = layers.DepthwiseConv2D(3, strides=stride, padding="valid", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_dw_relu")(x)


def classifier_head(x, num_classes: int, dropout: float, name: str = "head"):
    """GlobalAveragePooling2D (no keepdims) -> Dropout -> Dense softmax.

    Without keepdims the MEAN ends XNNPACK's sparse cluster and the RESHAPE keeps
    the dense classifier out of it; `MEAN(keepdims)` + 1x1 conv would pull the
    head's dense weights into the cluster's zero count (and LiteRT 2.3.0 on arm64
    fails to allocate that graph).
    """
    x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name=f"{name}_classifier")(x)
