"""A small Inception-style network (Szegedy et al., 2015, arXiv:1409.4842).

The other way to a sparse network: instead of zeroing weights, the Inception
module approximates a sparse layer with parallel dense branches of different
receptive fields (1x1, 1x1->3x3, 1x1->3x3->3x3, pool->1x1) concatenated — the
"sparse connectivity pattern" of the paper. CONCATENATION breaks XNNPACK's
sparse cluster, so this family is pruned with the `all` policy and runs on
XNNPACK's dense kernels; it is here for accuracy/size comparisons.
"""

from __future__ import annotations

import tensorflow as tf

from tfsparse.zoo.layers import classifier_head, conv_bn_relu, image_input, make_divisible
from tfsparse.zoo.registry import register_model

layers = tf.keras.layers

# Output channels of each module's four branches, before width scaling:
# (1x1, 3x3 reduce -> 3x3, 3x3 reduce -> double 3x3, pool -> 1x1).
MODULES = (
    ((32, (32, 48), (16, 24), 16), 1),
    ((48, (48, 64), (24, 32), 24), 2),
    ((64, (64, 96), (32, 48), 32), 1),
    ((96, (96, 128), (48, 64), 48), 2),
)


def inception_module(x, branches, stride: int, width: float, name: str):
    one, (r3, c3), (r5, c5), pool = [
        make_divisible(b * width) if isinstance(b, int) else tuple(make_divisible(v * width) for v in b)
        for b in branches
    ]
    b1 = conv_bn_relu(x, one, 1, 1, name=f"{name}_b1")
    if stride == 2:
        b1 = layers.MaxPooling2D(2, name=f"{name}_b1_pool")(b1)
    b2 = conv_bn_relu(x, r3, 1, 1, name=f"{name}_b2_reduce")
    b2 = conv_bn_relu(b2, c3, 3, stride, name=f"{name}_b2")
    b3 = conv_bn_relu(x, r5, 1, 1, name=f"{name}_b3_reduce")
    b3 = conv_bn_relu(b3, c5, 3, 1, name=f"{name}_b3a")
    b3 = conv_bn_relu(b3, c5, 3, stride, name=f"{name}_b3b")
    b4 = layers.MaxPooling2D(3, strides=stride, padding="same", name=f"{name}_b4_pool")(x)
    b4 = conv_bn_relu(b4, pool, 1, 1, name=f"{name}_b4")
    return layers.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])


@register_model
def inception(width_multiplier: float = 1.0, input_size: int = 32, num_classes: int = 10,
              modules: int = len(MODULES), dropout: float = 0.2):
    """Stem + `modules` Inception modules + GAP/Dense head."""
    inputs = image_input(width_multiplier, input_size, modules, len(MODULES), "modules")
    x = conv_bn_relu(inputs, make_divisible(32 * width_multiplier), 3, 2, name="stem")
    for i, (branches, stride) in enumerate(MODULES[:modules], start=1):
        x = inception_module(x, branches, stride, width_multiplier, name=f"mixed{i}")
    outputs = classifier_head(x, num_classes, dropout)
    return tf.keras.Model(inputs, outputs, name="inception")
