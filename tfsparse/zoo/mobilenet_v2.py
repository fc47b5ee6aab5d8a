"""MobileNetV2 (Sandler et al., 2018, arXiv:1801.04381) built for XNNPACK's sparse path.

Inverted residual blocks: 1x1 expand -> 3x3 depthwise -> 1x1 linear project,
with an ADD shortcut when shape allows. XNNPACK keeps ADD of two 4D tensors
inside the sparse cluster, so the whole body runs channel-first.
"""

from __future__ import annotations

import tensorflow as tf

from tfsparse.zoo.layers import classifier_head, conv_bn_relu, depthwise_bn_relu, image_input, make_divisible
from tfsparse.zoo.registry import register_model

layers = tf.keras.layers

# (expansion t, output channels c, repeats n, first stride s): the paper's Table 2.
STAGES = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def inverted_residual(x, expansion: int, filters: int, stride: int, name: str):
    in_channels = x.shape[-1]
    h = x
    if expansion != 1:
        h = conv_bn_relu(h, in_channels * expansion, 1, 1, name=f"{name}_expand")
    h = depthwise_bn_relu(h, stride, name=name)
    h = conv_bn_relu(h, filters, 1, 1, name=f"{name}_project", activation=False)
    if stride == 1 and in_channels == filters:
        h = layers.Add(name=f"{name}_add")([x, h])
    return h


@register_model
def mobilenet_v2(width_multiplier: float = 1.0, input_size: int = 224, num_classes: int = 1000,
                 stages: int = len(STAGES), dropout: float = 0.1):
    """MobileNetV2; `stages` keeps only the first stages (for small inputs and tests)."""
    inputs = image_input(width_multiplier, input_size, stages, len(STAGES), "stages")
    x = conv_bn_relu(inputs, make_divisible(32 * width_multiplier), 3, 2, name="stem")
    block = 0
    for t, c, n, s in STAGES[:stages]:
        for i in range(n):
            block += 1
            x = inverted_residual(x, t, make_divisible(c * width_multiplier), s if i == 0 else 1, name=f"block{block}")
    last = make_divisible(1280 * max(1.0, width_multiplier))
    x = conv_bn_relu(x, last, 1, 1, name="top")
    outputs = classifier_head(x, num_classes, dropout)
    return tf.keras.Model(inputs, outputs, name="mobilenet_v2")
