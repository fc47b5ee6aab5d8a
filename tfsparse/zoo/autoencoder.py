"""A sparse autoencoder for feature frames (Ng, "Sparse autoencoder", CS294A notes, 2011).

frame -> Dense `encoder` (ReLU) -> Dense `code_dense` (ReLU) + L1 activity penalty `code` ->
Dense `decoder` (ReLU) -> Dense `reconstruction` (linear). The L1 penalty on the
code activations (added to the MSE reconstruction loss by Keras) drives most of
them to exactly zero: each frame is described by a few active code units. The
sub-network up to `code` is the feature extractor; TF-MOT then prunes the
weights as well, so both the activations and the weights are sparse.
"""

from __future__ import annotations

import tensorflow as tf

from tfsparse.zoo.registry import register_model

layers = tf.keras.layers
CODE_LAYER = "code"


@register_model
def sparse_autoencoder(input_dim: int = 40, hidden_units: int = 128, code_dim: int = 64, l1: float = 1e-3,
                       num_classes: int = 0):
    """`num_classes` is accepted (the trainer passes the data set's class count) and unused."""
    if input_dim < 1 or hidden_units < 1 or code_dim < 1 or l1 < 0:
        raise ValueError(f"input_dim, hidden_units, code_dim must be >= 1 and l1 >= 0, got "
                         f"{input_dim}, {hidden_units}, {code_dim}, {l1}")
    inputs = tf.keras.Input((input_dim,), name="frame")
    x = layers.Dense(hidden_units, activation="relu", name="encoder")(inputs)
    x = layers.Dense(code_dim, activation="relu", name="code_dense")(x)
    # A separate ActivityRegularization layer, not Dense(activity_regularizer=...): inside TF-MOT's
    # pruning wrapper a layer's own activity loss is created in a scratch graph and fails to train.
    code = layers.ActivityRegularization(l1=l1, name=CODE_LAYER)(x)
    x = layers.Dense(hidden_units, activation="relu", name="decoder")(code)
    outputs = layers.Dense(input_dim, name="reconstruction")(x)
    return tf.keras.Model(inputs, outputs, name="sparse_autoencoder")


def encoder(model, layer: str = CODE_LAYER):
    """The feature extractor: `model`'s layers up to and including `layer`, sharing their weights.

    Re-applied to a fresh input rather than `Model(model.input, layer.output)`: after TF-MOT's
    strip_pruning (a clone) the layers' recorded inputs no longer connect to `model.input`.
    """
    x = inputs = tf.keras.Input(model.input_shape[1:], name="frame")
    for current in model.layers[1:]:
        x = current(x)
        if current.name == layer:
            return tf.keras.Model(inputs, x, name=f"{model.name}_encoder")
    raise ValueError(f"{model.name} has no layer {layer!r}")
