"""DS-CNN keyword spotter (Zhang et al., "Hello Edge", 2017, arXiv:1711.07128).

A 10x4 convolution over (time, frequency) features with stride 2, then blocks of
3x3 depthwise + 1x1 pointwise convolutions (each with batch norm and ReLU), global
average pooling and a dense classifier - the paper's DS-CNN-S with `filters=64`
and 4 blocks. The 1x1 convolutions hold most of the weights and compute, so the
recipe prunes them (with the first convolution and the classifier).

`stem="xnnpack"` replaces the paper's 10x4 first convolution with the one stem XNNPACK's
sparse (channel-first) path can start from: a 3x3 stride-2 convolution on 3 channels,
explicitly padded (`../shared/docs/xnnpack-sparse.md`). The single log-mel channel is repeated
3 times in front of it (a CONCATENATION that runs before the cluster). Output size is the same
(25x20 for 49x40 features); without it, XNNPACK runs every layer dense however sparse the 1x1
convolutions are.
"""

from __future__ import annotations

import tensorflow as tf

from tfsparse.zoo.registry import register_model

layers = tf.keras.layers
# Keras' default 0.99 leaves the moving statistics far behind the weights for the first ~10 epochs
# of a short, high-learning-rate run: inference-mode accuracy sat at chance while training-mode
# accuracy was ~90%. 0.9 tracks within an epoch (~50 steps).
BN_MOMENTUM = 0.9


@register_model
def ds_cnn(num_frames: int = 49, num_mel_bins: int = 40, num_classes: int = 12, filters: int = 64,
           blocks: int = 4, dropout: float = 0.2, stem: str = "hello_edge"):
    """Input `features` (num_frames, num_mel_bins, 1) -> `conv1` -> `ds{i}_dw`/`ds{i}_pw` -> `logits` (softmax).

    `stem`: "hello_edge" (10x4 stride 2, the paper's) or "xnnpack" (3x3 stride 2 on the
    channel repeated 3 times: XNNPACK can run the network sparse).
    """
    if num_frames < 10 or num_mel_bins < 4:
        raise ValueError(f"input must be at least 10 frames x 4 bins, got {num_frames} x {num_mel_bins}")
    if filters < 1 or blocks < 1:
        raise ValueError(f"filters and blocks must be >= 1, got {filters}, {blocks}")
    if stem not in ("hello_edge", "xnnpack"):
        raise ValueError(f"stem must be 'hello_edge' or 'xnnpack', got {stem!r}")
    inputs = tf.keras.Input((num_frames, num_mel_bins, 1), name="features")
    if stem == "xnnpack":
        x = layers.Concatenate(name="features_x3")([inputs, inputs, inputs])
        x = layers.ZeroPadding2D(1, name="conv1_pad")(x)
        x = layers.Conv2D(filters, 3, strides=2, padding="valid", use_bias=False, name="conv1")(x)
    else:
        x = layers.Conv2D(filters, (10, 4), strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    for i in range(1, blocks + 1):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"ds{i}_dw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"ds{i}_dw_bn")(x)
        x = layers.ReLU(name=f"ds{i}_dw_relu")(x)
        x = layers.Conv2D(filters, 1, use_bias=False, name=f"ds{i}_pw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"ds{i}_pw_bn")(x)
        x = layers.ReLU(name=f"ds{i}_pw_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="ds_cnn")
