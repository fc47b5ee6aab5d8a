"""Sparse from the first step: static masks, SET and RigL, beside TF-MOT's gradual pruning.

`[pruning] method` picks how a network becomes sparse:

- `gradual` (default): TF-MOT's magnitude pruning of a network first trained dense
  (`tfsparse.pruning.magnitude`; Zhu & Gupta 2017).
- `static`: a random mask drawn at initialisation, per-layer sparsity from `distribution`,
  fixed for the whole run ("static random" in Evci et al. 2020).
- `set`: Sparse Evolutionary Training (Mocanu et al. 2018, Nature Communications 9:2383):
  every `update_every` steps drop the `drop_fraction` smallest-magnitude active weights of
  each layer and regrow as many connections at random.
- `rigl`: Rigging the Lottery (Evci, Gale, Menick, Castro & Elsen, ICML 2020,
  arXiv:1911.11134): drop by magnitude, regrow where the *dense* gradient is largest; the
  dense gradient is computed only on update steps.

`distribution`: `uniform` gives every pruned layer the target sparsity; `erk`
(Erdős–Rényi-Kernel, Evci et al. 2020 section 3) scales each layer's density with
`sum(shape) / prod(shape)`, so small layers stay denser, with one factor epsilon chosen so
that the pruned layers together reach the target; a layer whose density would exceed 1 is
made dense and epsilon is solved again over the others (as google-research/rigl
`sparse_utils.get_sparsities_erdos_renyi` does). Only the layers the policy selects
(`xnnpack`, `all`, a regex, minus `exclude`: `tfsparse.pruning.magnitude`) take part.

`drop_fraction` decays along a cosine from its value at step 0 to 0 at the last update
(`stop_updates` of the run), as in RigL's `cosine` schedule; after that the masks are frozen.
Regrown connections start at zero, with zero optimiser state (RigL's code does this for SET
as well, and so does this module). Following RigL's implementation, regrowth picks among
every position that is inactive after the drop, the just-dropped ones included.

The masks live in this module's `SparseTraining` callback, not in the model: after every
optimiser step it writes zeros into the masked positions of each kernel *and* of the
optimiser's slots (Adam's m and v, a momentum), so masked weights and their optimiser
state are exactly zero at every step and each layer holds exactly its number of non-zeros.
The model stays a plain Keras model (no wrappers), so what comes out is the same kind of
sparse model as TF-MOT's stripped one.

    import numpy as np
    from tfsparse.pruning import sparse_training as st

    st.erk_sparsities({"a": (1, 1, 16, 32), "b": (1, 1, 32, 256)}, 0.9)   # {'a': 0.77..., 'b': 0.91...}
    rng = np.random.default_rng(0)
    masks = st.random_masks({"a": (4, 4)}, {"a": 0.5}, rng)                # 8 of 16 positions active
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from tfsparse import atomic
from tfsparse.recipe import METHOD_KEYS, PRUNING_METHODS, SPARSE_DISTRIBUTIONS

# The names live in the recipe (which loads without TensorFlow): gradual, static, set, rigl; uniform, erk.
METHODS, DISTRIBUTIONS, METHOD_KEYS = PRUNING_METHODS, SPARSE_DISTRIBUTIONS, METHOD_KEYS
# RigL's published settings (Evci et al. 2020, section 4.1): dT = 100, alpha = 0.3, stop at 75%.
DEFAULTS = {"distribution": "uniform", "update_every": 100, "drop_fraction": 0.3, "stop_updates": 0.75}


def setting(config, key: str):
    """The recipe's value of a sparse-training key, or its default."""
    value = getattr(config, key, None)
    return DEFAULTS[key] if value is None else value


def is_sparse_from_scratch(config) -> bool:
    return getattr(config, "method", "gradual") != "gradual"


# ---- layer sparsities -------------------------------------------------------------------------


def selected_layers(model, config) -> list[str]:
    """The layers the recipe's policy makes sparse: exactly those `magnitude.apply_pruning`
    would wrap (xnnpack / all / regex, minus `exclude`), found by wrapping a throw-away clone."""
    from tfsparse.pruning import magnitude

    magnitude.check_policy(model, config)
    probe = magnitude.apply_pruning(model, config, magnitude.one_shot_schedule(config))
    return magnitude.pruned_layer_names(probe)


def callback_for(model, config, total_steps: int, *, seed: int = 0, gradient_batch=None, log_dir=None,
                 checkpoints=None) -> "SparseTraining":
    """A `SparseTraining` callback for `model` from a `[pruning]` section: the policy's layers, masks
    drawn with `seed` at the section's distribution and `final_sparsity`, its update schedule over
    `total_steps` (no rescaling). Fit the compiled model with it; the model stays plain Keras."""
    from tfsparse.pruning import magnitude

    if config.method == "gradual":
        raise ValueError("pruning.method = 'gradual' is TF-MOT's pruning, not sparse training")
    names = selected_layers(model, config)
    shapes = {n: tuple(magnitude.prunable_kernel(model.get_layer(n)).shape) for n in names}
    rng = np.random.default_rng(seed)
    masks = random_masks(shapes, layer_sparsities(shapes, config.final_sparsity, setting(config, "distribution")), rng)
    return SparseTraining(config.method, masks, update_schedule(config, total_steps, total_steps), rng,
                          magnitude.prunable_kernel, gradient_batch=gradient_batch, checkpoints=checkpoints,
                          log_dir=log_dir)


def n_zeros(size: int, sparsity: float) -> int:
    """Zeros of a layer with `size` weights at `sparsity` (nearest integer)."""
    return int(round(sparsity * size))


def uniform_sparsities(shapes: dict[str, tuple], target: float) -> dict[str, float]:
    return {name: float(target) for name in shapes}


def erk_sparsities(shapes: dict[str, tuple], target: float, power_scale: float = 1.0) -> dict[str, float]:
    """Erdős–Rényi-Kernel sparsities over the pruned layers (Evci et al. 2020).

    Density of layer l = eps * (sum(shape_l) / prod(shape_l)) ** power_scale, with eps solved so
    that sum_l density_l * n_l = (1 - target) * sum_l n_l. A layer whose density would exceed 1
    is made dense; its weights then count against the budget of the others and eps is solved
    again (the loop of rigl's `get_sparsities_erdos_renyi`, reimplemented here on shapes
    because that function needs TF1 mask variables).
    """
    dense: set[str] = set()
    while True:
        rhs = 0.0
        divisor = 0.0
        raw = {}
        for name, shape in shapes.items():
            size = int(np.prod(shape))
            zeros = target * size
            if name in dense:
                rhs -= zeros
            else:
                rhs += size - zeros
                raw[name] = (float(np.sum(shape)) / size) ** power_scale
                divisor += raw[name] * size
        if not raw:
            return {name: 0.0 for name in shapes}
        eps = rhs / divisor
        max_raw = max(raw.values())
        if max_raw * eps > 1:
            dense |= {name for name, p in raw.items() if p == max_raw}
            continue
        return {name: (0.0 if name in dense else float(1.0 - eps * raw[name])) for name in shapes}


def layer_sparsities(shapes: dict[str, tuple], target: float, distribution: str) -> dict[str, float]:
    if distribution == "erk":
        return erk_sparsities(shapes, target)
    return uniform_sparsities(shapes, target)


def random_masks(shapes: dict[str, tuple], sparsities: dict[str, float], rng: np.random.Generator) -> dict:
    """One boolean mask per layer (True = active) with exactly `n_zeros` inactive positions, drawn at random."""
    masks = {}
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        flat = np.ones(size, dtype=bool)
        flat[rng.permutation(size)[:n_zeros(size, sparsities[name])]] = False
        masks[name] = flat.reshape(shape)
    return masks


# ---- the update schedule ----------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateSchedule:
    """When masks change (in optimizer steps of the run actually made) and by how much.

    Updates happen at steps k * update_every (k >= 1) up to `stop_step`; the fraction of each
    layer's active weights that is dropped (and regrown) at step t is
    `drop_fraction * (1 + cos(pi * t / stop_step)) / 2`.
    """

    update_every: int
    stop_step: int
    drop_fraction: float

    def is_update(self, step: int) -> bool:
        return 0 < step <= self.stop_step and step % self.update_every == 0 and self.drop_fraction > 0

    def fraction_at(self, step: int) -> float:
        if self.stop_step <= 0:
            return 0.0
        return self.drop_fraction * 0.5 * (1.0 + math.cos(math.pi * min(step, self.stop_step) / self.stop_step))

    def update_steps(self) -> list[int]:
        return [s for s in range(self.update_every, self.stop_step + 1, self.update_every) if self.is_update(s)]


def update_schedule(config, total_steps: int, full_total_steps: int) -> UpdateSchedule:
    """The recipe's update schedule rescaled to `total_steps`, as `magnitude.schedule_steps` rescales
    `frequency`: `update_every` is in steps of the run at its full size, so a shortened run makes
    the same number of updates."""
    if config.method == "static":
        return UpdateSchedule(1, 0, 0.0)
    scale = total_steps / max(full_total_steps, total_steps)
    every = max(1, round(setting(config, "update_every") * scale))
    stop = int(math.floor(setting(config, "stop_updates") * total_steps))
    return UpdateSchedule(every, stop, float(setting(config, "drop_fraction")))


# ---- drop and grow (numpy: one layer) ---------------------------------------------------------


def drop_and_grow(weights: np.ndarray, mask: np.ndarray, fraction: float, grow_scores: np.ndarray):
    """One SET/RigL update of one layer. Returns (new mask, grown positions that were inactive).

    Drops the `floor(fraction * active)` active weights of smallest magnitude, then activates
    the same number of positions with the highest `grow_scores` among those inactive after the
    drop. The number of active weights is unchanged.
    """
    flat_mask = mask.reshape(-1)
    active = np.flatnonzero(flat_mask)
    k = int(math.floor(fraction * active.size))
    if k == 0:
        return mask.copy(), np.zeros_like(mask)
    # Stable sort: ties (e.g. regrown weights still at zero) drop in index order, reproducibly.
    order = np.argsort(np.abs(weights.reshape(-1)[active]), kind="stable")
    kept = flat_mask.copy()
    kept[active[order[:k]]] = False
    candidates = np.flatnonzero(~kept)
    scores = grow_scores.reshape(-1)[candidates]
    # Highest score first; stable on the negated scores keeps index order among ties.
    grow = candidates[np.argsort(-scores, kind="stable")[:k]]
    new = kept.copy()
    new[grow] = True
    grown_new = new & ~flat_mask
    return new.reshape(mask.shape), grown_new.reshape(mask.shape)


# ---- the callback -----------------------------------------------------------------------------


def state_path(checkpoints: Path, epoch: int) -> Path:
    """The masks and random state after `epoch` epochs (kept beside the epoch's model checkpoint)."""
    return Path(checkpoints) / f"sparse_state.e{epoch}.npz"


class SparseTraining(tf.keras.callbacks.Callback):
    """Holds the masks of a sparse-from-scratch run and applies them after every step.

    Args:
        method: "static", "set" or "rigl".
        masks: {layer name: bool array}, the masks to start from (drawn, or loaded on resume).
        schedule: the `UpdateSchedule` (ignored for static).
        rng: the numpy Generator for SET's regrowth and RigL's gradient batches; its state is
            saved with the masks, so a resumed run draws what the uninterrupted run would have.
        kernel_of: layer -> its pruned variable (`magnitude.prunable_kernel`).
        gradient_batch: rng -> (x, y), the batch RigL's dense gradient is computed on.
        checkpoints: where `on_epoch_end` writes `sparse_state.e<N>.npz` (None: nowhere).
        log_dir: TensorBoard folder for per-layer sparsity and connections changed per update.
    """

    def __init__(self, method: str, masks: dict, schedule: UpdateSchedule, rng: np.random.Generator,
                 kernel_of: Callable, gradient_batch: Callable | None = None, checkpoints: Path | None = None,
                 log_dir: str | None = None, history: list | None = None):
        super().__init__()
        if method not in ("static", "set", "rigl"):
            raise ValueError(f"SparseTraining: method must be static, set or rigl, got {method!r}")
        if method == "rigl" and gradient_batch is None:
            raise ValueError("SparseTraining: rigl needs gradient_batch")
        self.method, self.schedule, self.rng = method, schedule, rng
        self.masks = {name: np.asarray(m, dtype=bool) for name, m in masks.items()}
        self.kernel_of, self.gradient_batch = kernel_of, gradient_batch
        self.checkpoints, self.log_dir = checkpoints, log_dir
        self.history = list(history or [])  # one entry per update: step, fraction, changed per layer
        self._writer = None
        self._built = False

    # -- set-up: variables, optimiser slots, the compiled masking step
    def _build(self):
        model = self.model
        self.kernels = {name: self.kernel_of(model.get_layer(name)) for name in self.masks}
        self.mask_vars = {name: tf.Variable(self.masks[name], trainable=False, dtype=tf.bool,
                                            name=f"{name}_sparse_mask") for name in self.masks}
        optimizer = model.optimizer
        slots = self._slots(optimizer)
        if not any(slots.values()) and hasattr(optimizer, "build"):
            optimizer.build(model.trainable_variables)  # slots are made lazily at the first step
            slots = self._slots(optimizer)
        self.slots = slots
        pairs = [(self.kernels[n], self.mask_vars[n]) for n in self.masks]
        pairs += [(slot, self.mask_vars[n]) for n in self.masks for slot in self.slots[n]]

        @tf.function
        def apply_masks():
            # tf.where, not a product: a masked weight becomes +0.0 (never -0.0 or NaN * 0).
            for var, mask in pairs:
                var.assign(tf.where(mask, var, tf.zeros_like(var)))

        self._apply = apply_masks
        if self.log_dir:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        self._built = True

    def _slots(self, optimizer) -> dict:
        """The optimiser variables that belong to each masked kernel (Adam m/v, momentum)."""
        variables = [v for v in getattr(optimizer, "variables", []) if v is not getattr(optimizer, "iterations", None)]
        result = {}
        for name, kernel in self.kernels.items():
            suffix = "/" + kernel.name
            result[name] = [v for v in variables if v.shape == kernel.shape and v.name.endswith(suffix)
                            and v.name != kernel.name]
        return result

    def on_train_begin(self, logs=None):
        if not self._built:
            self._build()
        self._apply()

    # -- every step
    def on_train_batch_end(self, batch, logs=None):
        if self.method != "static":
            step = int(self.model.optimizer.iterations.numpy())
            if self.schedule.is_update(step):
                self.update(step)
        self._apply()

    def update(self, step: int) -> dict:
        """One SET/RigL mask update at optimizer step `step`; returns {layer: connections changed}."""
        fraction = self.schedule.fraction_at(step)
        names = list(self.masks)
        if self.method == "rigl":
            scores = self.dense_gradients(names)
        else:
            scores = {n: self.rng.random(self.masks[n].shape) for n in names}
        changed, dropped = {}, {}
        for name in names:
            kernel = self.kernels[name]
            weights = kernel.numpy()
            new, grown = drop_and_grow(weights, self.masks[name], fraction, scores[name])
            changed[name] = int(grown.sum())
            dropped[name] = int(math.floor(fraction * int(self.masks[name].sum())))
            # Regrown connections start at zero, with no optimiser state (RigL section 3).
            kernel.assign(np.where(grown, 0, weights).astype(weights.dtype))
            for slot in self.slots[name]:
                slot.assign(np.where(grown, 0, slot.numpy()).astype(slot.dtype.as_numpy_dtype))
            self.masks[name] = new
            self.mask_vars[name].assign(new)
        # `dropped`: the weights each layer dropped (and regrew); `changed`: connections that are new
        # (a position can be dropped and regrown at once: RigL's rule lets it, then it is not new).
        entry = {"step": step, "drop_fraction": round(fraction, 6), "dropped": dropped, "changed": changed,
                 "changed_total": sum(changed.values())}
        self.history.append(entry)
        if self._writer:
            with self._writer.as_default(step=step):
                tf.summary.scalar("sparse_training/connections_changed", entry["changed_total"])
                tf.summary.scalar("sparse_training/drop_fraction", fraction)
                for name, n in changed.items():
                    tf.summary.scalar(f"connections_changed/{name}", n)
        return changed

    def dense_gradients(self, names) -> dict:
        """|dL/dW| for every position of each masked kernel (the masked weights are zero, so this is
        the gradient of the dense network at the sparse point), on one batch drawn with `rng`."""
        x, y = (tf.convert_to_tensor(v) for v in self.gradient_batch(self.rng))
        variables = [self.kernels[n] for n in names]
        with tf.GradientTape() as tape:
            # training=False: no dropout noise and no batch-statistics side effects from this extra pass.
            y_pred = self.model(x, training=False)
            loss = self.model.compute_loss(x=x, y=y, y_pred=y_pred)
        grads = tape.gradient(loss, variables)
        return {n: np.abs(g.numpy()) if g is not None else np.zeros(self.masks[n].shape)
                for n, g in zip(names, grads)}

    # -- every epoch: sparsity in the logs and TensorBoard, masks + random state on disk
    def layer_sparsity(self) -> dict[str, float]:
        """Inactive fraction of each mask (the kernels' zero fraction can be a little higher right
        after an update: regrown weights start at zero)."""
        return {name: float(1.0 - np.mean(mask)) for name, mask in self.masks.items()}

    def on_epoch_end(self, epoch, logs=None):
        sparsity = self.layer_sparsity()
        total = sum(m.size for m in self.masks.values())
        overall = 1.0 - sum(int(m.sum()) for m in self.masks.values()) / total if total else 0.0
        if logs is not None:
            logs["sparsity"] = overall  # shown by the per-epoch progress line and TensorBoard
        if self._writer:
            step = int(self.model.optimizer.iterations.numpy())
            with self._writer.as_default(step=step):
                for name, value in sparsity.items():
                    tf.summary.scalar(f"sparsity/{name}", value)
                tf.summary.scalar("sparsity/overall", overall)
            self._writer.flush()
        if self.checkpoints is not None:
            self.save(state_path(self.checkpoints, epoch + 1))
            stale = state_path(self.checkpoints, epoch - 1)  # keep this epoch's and the one before
            if stale.exists():
                stale.unlink()

    def save(self, path: Path):
        """Masks, the random generator's state and the update history, written atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, **{f"mask:{n}": m for n, m in self.masks.items()},
                 rng=np.array(json.dumps(self.rng.bit_generator.state)),
                 history=np.array(json.dumps(self.history)),
                 schedule=np.array(json.dumps(asdict(self.schedule))))
        atomic.write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> tuple[dict, np.random.Generator, list]:
    """(masks, rng, history) as `SparseTraining.save` wrote them."""
    with np.load(path) as data:
        masks = {key.split(":", 1)[1]: data[key].astype(bool) for key in data.files if key.startswith("mask:")}
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(str(data["rng"]))
        history = json.loads(str(data["history"]))
    return masks, rng, history
