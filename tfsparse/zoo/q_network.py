"""A small Q-network for RL agents: observation -> one action value per action (linear output).

The agent's greedy action is the argmax of the output, exactly as for `policy_net`, so an app
runs the exported file the same way; the values are estimates of the discounted return
(Mnih et al., "Human-level control through deep reinforcement learning", Nature 2015), not
probabilities, hence the linear output layer.

Two input kinds:
- `num_states` (a discrete observation, e.g. FrozenLake's cell index): the input is its one-hot
  vector, as for `policy_net`;
- `obs_low` / `obs_high` (a box observation, e.g. MountainCar's position and velocity): the raw
  observation, rescaled to [-1, 1] by a fixed `Normalization` layer inside the network, so the
  exported file takes exactly what `env.step` returns.

    >>> from tfsparse.zoo import create_model
    >>> create_model("q_network", num_states=16, num_classes=4).output_shape
    (None, 4)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfsparse.zoo.registry import register_model

layers = tf.keras.layers


@register_model
def q_network(num_states: int | None = None, obs_low: list | None = None, obs_high: list | None = None,
              hidden_units: int = 64, hidden_layers: int = 2, num_classes: int = 4):
    """Input `state` -> `hidden1..N` (ReLU) -> Dense `q_values` (linear, one value per action)."""
    if (num_states is None) == (obs_low is None):
        raise ValueError("q_network needs either num_states (discrete observation) or obs_low/obs_high (box)")
    if hidden_units < 1 or hidden_layers < 1:
        raise ValueError(f"hidden_units and hidden_layers must be >= 1, got {hidden_units}, {hidden_layers}")
    if num_states is not None:
        inputs = tf.keras.Input((int(num_states),), name="state")
        x = inputs
    else:
        low, high = np.asarray(obs_low, np.float32), np.asarray(obs_high, np.float32)
        if low.shape != high.shape or low.ndim != 1 or not np.all(high > low):
            raise ValueError(f"obs_low/obs_high must be 1-D lists with high > low, got {obs_low}, {obs_high}")
        inputs = tf.keras.Input((len(low),), name="state")
        # A fixed affine map (no adapt()): (obs - centre) / half-range, so every feature is in [-1, 1].
        x = layers.Normalization(mean=(low + high) / 2, variance=((high - low) / 2) ** 2, name="obs_scale")(inputs)
    for i in range(1, hidden_layers + 1):
        x = layers.Dense(hidden_units, activation="relu", name=f"hidden{i}")(x)
    outputs = layers.Dense(num_classes, name="q_values")(x)
    return tf.keras.Model(inputs, outputs, name="q_network")
