"""Magnitude pruning with TF-MOT: schedules, policies, one-shot pruning, sparsity.

Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017,
arXiv:1710.01878) raises each pruned layer's sparsity from `initial_sparsity`
to `final_sparsity` along a polynomial while training continues, so the
network adapts. One-shot pruning removes the weights in a single step; random
one-shot pruning is the baseline magnitude pruning is compared against
(Gale, Elsen & Hooker, "The State of Sparsity in Deep Neural Networks", 2019,
arXiv:1902.09574).
"""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

# The wrapper class is not exported by tfmot's public API; tfmot is pinned to 0.8.1.
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

from tfsparse.errors import UserError
from tfsparse.pruning import block as block_pruning

sparsity = tfmot.sparsity.keras
layers = tf.keras.layers


@dataclass(frozen=True)
class ScheduleSteps:
    """A pruning schedule in optimizer steps of the run actually made."""

    begin_step: int
    end_step: int
    frequency: int


def schedule_steps(config, total_steps: int, full_total_steps: int) -> ScheduleSteps:
    """Rescales the recipe's schedule (fractions, frequency at full size) to `total_steps`.

    TF-MOT counts steps from 1 (the wrapper increments before it prunes) and
    prunes at `begin + k * frequency` while `<= end`; the sparsity reaches
    `final_sparsity` only at `end_step` itself. So `end_step` is snapped down
    onto that grid, which guarantees that even an 8-step phase ends exactly at
    `final_sparsity`.
    """
    if total_steps < 1:
        raise UserError("the pruning phase has no training steps (check --epochs and --max-train-examples)")
    scale = total_steps / max(full_total_steps, total_steps)
    begin = min(total_steps, max(1, round(config.begin * total_steps)))
    end = min(total_steps, max(begin + 1, round(config.end * total_steps)))
    if end <= begin:  # a one-step phase: prune straight to final_sparsity at that step
        return ScheduleSteps(begin, begin, 1)
    frequency = min(max(1, round(config.frequency * scale)), end - begin)
    end = begin + (end - begin) // frequency * frequency
    return ScheduleSteps(begin, end, frequency)


def make_schedule(config, steps: ScheduleSteps):
    """The TF-MOT schedule object for the recipe's `[pruning]` section."""
    if config.schedule == "constant" or steps.end_step == steps.begin_step:
        # PolynomialDecay divides by (end - begin); a one-step schedule is a constant one.
        return sparsity.ConstantSparsity(config.final_sparsity, begin_step=steps.begin_step,
                                         end_step=steps.end_step, frequency=steps.frequency)
    return sparsity.PolynomialDecay(initial_sparsity=config.initial_sparsity,
                                    final_sparsity=config.final_sparsity, power=config.power,
                                    begin_step=steps.begin_step, end_step=steps.end_step,
                                    frequency=steps.frequency)


def one_shot_schedule(config):
    """Prune once, at the first step, to `final_sparsity`; the masks then stay fixed."""
    return sparsity.ConstantSparsity(config.final_sparsity, begin_step=1, end_step=1, frequency=1)


class XNNPackPolicy(sparsity.PruneForLatencyOnXNNPack):
    """`PruneForLatencyOnXNNPack` that names the layer it rejects, and why.

    TF-MOT's own message names only the layer class; a user with thirty
    DepthwiseConv2D layers needs to know which one, and what to change.
    """

    def __init__(self, exclude: str | None = None):
        super().__init__()
        self._exclude = re.compile(exclude) if exclude else None
        self._rejected = None  # the first layer _check_layer_support refused in this check
        self._position = {}  # id(layer) -> index in model.layers, for the walk's order

    def allow_pruning(self, layer):
        return super().allow_pruning(layer) and not (self._exclude and self._exclude.search(layer.name))

    def _check_layer_support(self, layer):
        supported = super()._check_layer_support(layer)
        if not supported and self._rejected is None:
            self._rejected = layer
        return supported

    def _lookup_layers(self, source_layers, stop_fn, next_fn):
        # TF-MOT's walk (same stop and dead-end rules) pops layers from a set, whose order follows
        # memory addresses: the layer it rejected first changed from run to run. This one visits
        # in the model's layer order, so the error names the earliest unsupported layer, every time.
        position = self._position
        key = lambda layer: (position.get(id(layer), len(position)), layer.name)  # noqa: E731
        to_visit = [(key(layer), id(layer), layer) for layer in source_layers]
        heapq.heapify(to_visit)
        used = {id(layer) for layer in source_layers}
        found = set()
        while to_visit:
            layer = heapq.heappop(to_visit)[2]
            if stop_fn(layer):
                found.add(layer)
                continue
            next_layers = next_fn(layer)
            if not next_layers:
                return set()
            for nxt in next_layers:
                if id(nxt) not in used:
                    used.add(id(nxt))
                    heapq.heappush(to_visit, (key(nxt), id(nxt), nxt))
        return found

    def ensure_model_supports_pruning(self, model):
        self._rejected = None
        self._position = {id(layer): i for i, layer in enumerate(model.layers)}
        try:
            super().ensure_model_supports_pruning(model)
        except ValueError as e:
            layer = self._rejected
            if layer is None:
                raise UserError(f"model {model.name!r} is not eligible for XNNPACK sparse inference: {e}") from None
            raise UserError(f"model {model.name!r} is not eligible for XNNPACK sparse inference: layer "
                            f"{layer.name!r} ({type(layer).__name__}) {_why_unsupported(layer)}") from None


def _why_unsupported(layer) -> str:
    if isinstance(layer, layers.DepthwiseConv2D):
        return (f"has kernel {layer.kernel_size}, strides {layer.strides}, padding {layer.padding!r}: XNNPACK "
                "needs 3x3 or 5x5, multiplier 1, and stride 2 only as ZeroPadding2D(1 or 2) + 'valid'")
    if isinstance(layer, layers.Conv2D):
        return (f"has kernel {layer.kernel_size} and strides {layer.strides}: inside the sparse subgraph only 1x1 "
                "stride-1 convolutions are allowed (the 3x3 stride-2 stem on 3 channels starts it)")
    if isinstance(layer, layers.GlobalAveragePooling2D):
        return "is not the end of the subgraph (use GlobalAveragePooling2D() then Dense)"
    return ("cannot run inside XNNPACK's sparse subgraph (stem to GlobalAveragePooling2D); "
            "supported: 1x1 Conv2D, 3x3/5x5 DepthwiseConv2D, ZeroPadding2D, BatchNorm, ReLU, Add, Multiply")


def _params(config, schedule) -> dict:
    params = {"pruning_schedule": schedule}
    if config.block_size:
        params["block_size"] = tuple(config.block_size)
    if config.sparsity_m_by_n:
        params["sparsity_m_by_n"] = tuple(config.sparsity_m_by_n)
    return params


def check_policy(model, config) -> None:
    """Raises UserError if the recipe's policy cannot apply to `model` (before any training)."""
    if config.policy == "xnnpack":
        XNNPackPolicy(config.exclude).ensure_model_supports_pruning(model)
    elif config.policy != "all":
        pattern = re.compile(config.policy)
        if not any(pattern.search(layer.name) and _is_prunable(layer) for layer in model.layers):
            raise UserError(f"pruning.policy {config.policy!r} matches no prunable layer of {model.name!r}")


def _is_prunable(layer) -> bool:
    return isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.DepthwiseConv2D, layers.Dense, layers.Embedding)) or (
        isinstance(layer, tfmot.sparsity.keras.PrunableLayer))


def apply_pruning(model, config, schedule):
    """Wraps the layers the policy selects with `prune_low_magnitude`."""
    params = _params(config, schedule)
    if config.policy == "xnnpack" and block_pruning.uses_blocks(config):
        # TF-MOT's block_size rejects rank-4 kernels: 1x1 convs go through block_pruning.
        policy = XNNPackPolicy(config.exclude)
        policy.ensure_model_supports_pruning(model)
        return block_pruning.prune_with_blocks(model, config, schedule, policy.allow_pruning)
    if config.policy == "xnnpack":
        return sparsity.prune_low_magnitude(model, pruning_policy=XNNPackPolicy(config.exclude), **params)
    pattern = re.compile(".*" if config.policy == "all" else config.policy)
    exclude = re.compile(config.exclude) if config.exclude else None
    if block_pruning.uses_blocks(config):
        return block_pruning.prune_with_blocks(model, config, schedule, lambda layer: bool(
            pattern.search(layer.name) and _is_prunable(layer) and not (exclude and exclude.search(layer.name))))

    def clone(layer):
        # Returning the original layer objects keeps their trained weights (the
        # pattern TF-MOT's guide uses for per-layer pruning).
        if pattern.search(layer.name) and _is_prunable(layer) and not (exclude and exclude.search(layer.name)):
            return sparsity.prune_low_magnitude(layer, **params)
        return layer

    return tf.keras.models.clone_model(model, clone_function=clone)


def pruned_layer_names(pruned_model) -> list[str]:
    """Names of the layers `apply_pruning` wrapped (their inner layers' names)."""
    return [layer.layer.name for layer in pruned_model.layers
            if isinstance(layer, PruneLowMagnitude)]


def prunable_kernel(layer):
    """The weight TF-MOT prunes in `layer` (kernel, depthwise kernel or embeddings)."""
    for attr in ("kernel", "depthwise_kernel", "embeddings"):
        if hasattr(layer, attr):
            return getattr(layer, attr)
    raise ValueError(f"layer {layer.name!r} has no prunable kernel")


def layer_sparsity(model, names: list[str]) -> dict[str, float]:
    """Fraction of exact zeros in each named layer's pruned kernel."""
    result = {}
    for name in names:
        weights = prunable_kernel(model.get_layer(name)).numpy()
        result[name] = float(np.mean(weights == 0))
    return result


def overall_sparsity(model, names: list[str]) -> float:
    """Zeros / weights over all the pruned kernels together."""
    zeros = total = 0
    for name in names:
        weights = prunable_kernel(model.get_layer(name)).numpy()
        zeros += int(np.sum(weights == 0))
        total += weights.size
    return zeros / total if total else 0.0


def zero_randomly(model, names: list[str], target: float, seed: int) -> None:
    """Random one-shot pruning: zero `target` of each named kernel at random.

    Wrapping the result with `one_shot_schedule` then freezes exactly these
    zeros as the masks: magnitude pruning to the same sparsity selects the zeros.
    """
    rng = np.random.default_rng(seed)
    _zero_first(model, names, target, lambda flat: rng.permutation(flat.size))


def zero_smallest(model, names: list[str], target: float) -> None:
    """Magnitude one-shot pruning: zero the `target` fraction of smallest |w| per kernel."""
    _zero_first(model, names, target, lambda flat: np.argsort(np.abs(flat), kind="stable"))


def _zero_first(model, names: list[str], target: float, order) -> None:
    """Zeros, in each named kernel, the first `target` fraction of positions in `order(flat)`."""
    for name in names:
        variable = prunable_kernel(model.get_layer(name))
        weights = variable.numpy()
        flat = weights.reshape(-1).copy()
        flat[order(flat)[:int(round(target * flat.size))]] = 0
        variable.assign(flat.reshape(weights.shape))


def steps_per_epoch(examples: int, batch_size: int) -> int:
    return max(1, math.ceil(examples / batch_size))


def strip(pruned_model):
    """The model without pruning wrappers: plain Keras layers with zeros in their kernels."""
    return block_pruning.plain_convs(sparsity.strip_pruning(pruned_model))
