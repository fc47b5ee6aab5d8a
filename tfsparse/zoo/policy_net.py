"""A small policy network for discrete-state control: one-hot state -> action probabilities.

Two ReLU hidden layers and a softmax over actions; the greedy action is the
argmax. Trained by imitation of the optimal policy (see
`tfsparse.datasets.frozenlake`) and pruned like any dense network.
"""

from __future__ import annotations

import tensorflow as tf

from tfsparse.zoo.registry import register_model

layers = tf.keras.layers


@register_model
def policy_net(num_states: int = 16, hidden_units: int = 64, num_classes: int = 4):
    """Input `state` (one-hot, num_states) -> Dense `hidden1`, `hidden2` (ReLU) -> Dense `actions` (softmax)."""
    if num_states < 1 or hidden_units < 1:
        raise ValueError(f"num_states and hidden_units must be >= 1, got {num_states}, {hidden_units}")
    inputs = tf.keras.Input((num_states,), name="state")
    x = layers.Dense(hidden_units, activation="relu", name="hidden1")(inputs)
    x = layers.Dense(hidden_units, activation="relu", name="hidden2")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="actions")(x)
    return tf.keras.Model(inputs, outputs, name="policy_net")
