"""MobileNetV1 (Howard et al., 2017, arXiv:1704.04861) built for XNNPACK's sparse path.

The same network Fast Sparse ConvNets (Elsen et al., 2019, arXiv:1911.09723)
prunes: 1x1 convolutions carry ~95% of the compute and are the only layers the
`xnnpack` pruning policy sparsifies; depthwise layers and the stem stay dense.
"""

from __future__ import annotations

import tensorflow as tf

from tfsparse.zoo.layers import classifier_head, conv_bn_relu, depthwise_bn_relu, image_input, make_divisible
from tfsparse.zoo.registry import register_model

# (pointwise filters, depthwise stride) per block, as in the paper's Table 1.
BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


@register_model
def mobilenet_v1(width_multiplier: float = 1.0, input_size: int = 224, num_classes: int = 1000,
                 depth: int = len(BLOCKS), dropout: float = 0.1):
    """MobileNetV1; `depth` keeps only the first blocks (for small inputs and tests)."""
    inputs = image_input(width_multiplier, input_size, depth, len(BLOCKS), "depth")
    x = conv_bn_relu(inputs, make_divisible(32 * width_multiplier), 3, 2, name="stem")
    for i, (filters, stride) in enumerate(BLOCKS[:depth], start=1):
        x = depthwise_bn_relu(x, stride, name=f"block{i}")
        x = conv_bn_relu(x, make_divisible(filters * width_multiplier), 1, 1, name=f"block{i}_pw")
    outputs = classifier_head(x, num_classes, dropout)
    return tf.keras.Model(inputs, outputs, name="mobilenet_v1")
