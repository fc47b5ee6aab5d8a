"""Recipes: the TOML files in `models/` that define what users train and ship.

A recipe has five sections, each loaded into a config object that validates in
`__init__` (so a bad value fails before any work starts) and round-trips
through `get_config()` / `from_config()` like TF-MOT's schedules do:

    [model]    zoo name + its arguments (width_multiplier, input_size, ...)
    [data]     data set name + options
    [train]    epochs, batch size, learning rates, seed, dense epochs
    [pruning]  TF-MOT magnitude pruning: schedule, sparsities, policy, structure
    [export]   TFLite variants written by `python -m tfsparse.export`

and an optional sixth, `[rl]` (`RLConfig`): an agent trained by interaction with a gymnasium
environment instead of a data set (`tfsparse.training.rl` trains it). Every section is defined
here, in one module without TensorFlow, so a recipe validates before anything heavy loads.

Any key can be overridden on the command line with `--set section.key=value`
(the value is parsed as TOML, so `--set pruning.final_sparsity=0.8` is a float).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfsparse.errors import UserError, unknown_name

SCHEDULES = ("polynomial", "constant")
EXPORT_VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8")
INT8_WEIGHTS = ("per-channel", "per-tensor")
# in_batch_softmax: a retrieval encoder's own train_step (in-batch negatives, tfsparse.zoo.splade).
LOSSES = ("sparse_categorical_crossentropy", "mse", "mae", "in_batch_softmax")
METRICS = ("accuracy", "mse", "mae", "mrr_at_10")
# [pruning] method: TF-MOT's gradual pruning of a trained dense network, or sparse from the first
# step (tfsparse.pruning.sparse_training), and the keys each sparse-from-scratch method reads.
PRUNING_METHODS = ("gradual", "static", "set", "rigl")
SPARSE_DISTRIBUTIONS = ("uniform", "erk")
RL_ALGORITHMS = ("dqn",)  # [rl] algorithm
METHOD_KEYS = {
    "gradual": (),
    "static": ("distribution",),
    "set": ("distribution", "update_every", "drop_fraction", "stop_updates"),
    "rigl": ("distribution", "update_every", "drop_fraction", "stop_updates"),
}


class _Section:
    """get_config/from_config for a dataclass section; unknown keys are errors."""

    section = ""

    def get_config(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        for key in config:
            if key not in known:
                raise ValueError(f"unknown key '{cls.section}.{key}' (known: {', '.join(sorted(known))})")
        return cls(**config)


def _check(condition: bool, message: str):
    if not condition:
        raise ValueError(message)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class ModelConfig(_Section):
    """[model]: a zoo architecture and the keyword arguments of its builder, or the user's model.

    `name` selects the builder in `tfsparse.zoo`; every other key is passed to
    it (e.g. `width_multiplier`, `input_size`). `num_classes` defaults to the
    data set's class count.

    `from = "path"` starts from the user's saved model instead (tf_keras `.keras`/`.h5`/
    SavedModel, or a Keras 3 `.keras`; see `tfsparse.training.user_model`): the dense phase
    fine-tunes it for `[train] dense_epochs`. `replace_head = true` allows a new classification
    head when the data has another number of classes. The other keys still shape the data
    (e.g. `input_size`); `name` defaults to the file's stem.
    """

    section = "model"
    name: str = "mobilenet_v1"
    args: dict[str, Any] = field(default_factory=dict)
    from_path: str | None = None
    replace_head: bool = False

    def __post_init__(self):
        _check(isinstance(self.name, str) and self.name, f"model.name must be a non-empty string, got {self.name!r}")
        _check(self.from_path is None or (isinstance(self.from_path, str) and self.from_path.strip()),
               f"model.from must be a path to a saved Keras model, got {self.from_path!r}")
        _check(isinstance(self.replace_head, bool), f"model.replace_head must be true or false, got {self.replace_head!r}")
        _check(not self.replace_head or self.from_path is not None,
               "model.replace_head needs model.from (a zoo model is built for the data's classes)")

    def get_config(self):
        extra = {"from": self.from_path} if self.from_path is not None else {}
        if self.replace_head:
            extra["replace_head"] = True
        return {"name": self.name, **extra, **self.args}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        from_path = config.pop("from", None)
        replace_head = config.pop("replace_head", False)
        default_name = Path(from_path).stem if isinstance(from_path, str) and from_path else cls.name
        return cls(name=config.pop("name", default_name), args=config, from_path=from_path,
                   replace_head=replace_head)


@dataclass
class DataConfig(_Section):
    """[data]: an offline data set (see `tfsparse.datasets`) and its options."""

    section = "data"
    name: str = "fashion_mnist"
    validation_examples: int = 5000
    # Environment options of the `frozenlake` data set (None elsewhere): stated in the recipe
    # because every reported success rate depends on them.
    is_slippery: bool | None = None
    map_name: str | None = None
    # Token lengths of the `bbc_retrieval` data set (None elsewhere): query (title) and document (body).
    query_length: int | None = None
    document_length: int | None = None
    # The user's own data (`image_folder`, `audio_folder`, `text_csv`, `arrays`; None elsewhere),
    # streamed with tf.data: see tfsparse/datasets/streamed.py and each kind's module.
    path: str | None = None
    image_size: int | list[int] | None = None
    validation_split: float | None = None
    test_split: float | None = None
    augment: list[str] | None = None
    cache: bool | str | None = None
    shuffle_buffer: int | None = None
    text_column: str | None = None
    label_column: str | None = None
    # What the model takes from a pixel (image_folder): `pixel * pixel_scale + pixel_offset`. The
    # default 1/255, 0 gives [0, 1]; a model trained on [-1, 1] (keras.applications MobileNetV2's
    # preprocess_input) wants 1/127.5, -1; a model with its own Rescaling layer wants raw pixels, 1, 0.
    pixel_scale: float | None = None
    pixel_offset: float | None = None

    def __post_init__(self):
        _check(isinstance(self.name, str) and self.name, f"data.name must be a non-empty string, got {self.name!r}")
        _check(isinstance(self.validation_examples, int) and self.validation_examples >= 0,
               f"data.validation_examples must be an integer >= 0, got {self.validation_examples!r}")
        _check(self.is_slippery is None or isinstance(self.is_slippery, bool),
               f"data.is_slippery must be true or false, got {self.is_slippery!r}")
        _check(self.map_name in (None, "4x4", "8x8"), f"data.map_name must be \"4x4\" or \"8x8\", got {self.map_name!r}")
        for name in ("query_length", "document_length"):
            value = getattr(self, name)
            _check(value is None or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4096),
                   f"data.{name} must be an integer in 1..4096 (tokens), got {value!r}")
        self._check_user_data()

    def _check_user_data(self):
        """The keys of the user-data kinds: types here, files when the data set is opened."""
        kind_keys = {"image_folder": {"image_size", "augment", "pixel_scale", "pixel_offset"}, "text_csv": {"text_column", "label_column"},
                     "audio_folder": set(), "arrays": set()}
        user_keys = ("path", "image_size", "validation_split", "test_split", "augment", "cache", "shuffle_buffer",
                     "text_column", "label_column", "pixel_scale", "pixel_offset")
        given = [k for k in user_keys if getattr(self, k) is not None]
        if self.name not in kind_keys:
            _check(not given, f"data.{given[0] if given else ''} applies to image_folder, audio_folder, text_csv "
                              f"and arrays, not to data.name = {self.name!r}")
            return
        _check(isinstance(self.path, str) and self.path.strip() != "",
               f"data.path must name the data (a folder or file) for data.name = {self.name!r}, got {self.path!r}")
        for key in ("image_size", "augment", "text_column", "label_column", "pixel_scale", "pixel_offset"):
            if getattr(self, key) is not None:
                _check(key in kind_keys[self.name], f"data.{key} does not apply to data.name = {self.name!r}")
        size = self.image_size
        if size is not None:
            _check((isinstance(size, int) and not isinstance(size, bool) and size >= 8)
                   or (isinstance(size, list) and len(size) == 2
                       and all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in size)),
                   f"data.image_size must be an integer >= 8 or [height, width], got {size!r}")
        for key in ("validation_split", "test_split"):
            value = getattr(self, key)
            _check(value is None or (_is_number(value) and 0 <= value < 1),
                   f"data.{key} must be a fraction in [0, 1), got {value!r}")
        if self.validation_split is not None and self.test_split is not None:
            _check(self.validation_split + self.test_split < 1,
                   f"data.validation_split + data.test_split must be < 1, got "
                   f"{self.validation_split} + {self.test_split}")
        if self.augment is not None:
            known = ("flip", "translate", "crop")
            _check(isinstance(self.augment, list) and all(a in known for a in self.augment),
                   f"data.augment must be a list of {', '.join(known)}, got {self.augment!r}")
        _check(self.cache is None or isinstance(self.cache, bool) or (isinstance(self.cache, str) and self.cache),
               f"data.cache must be true, false or a folder, got {self.cache!r}")
        _check(self.shuffle_buffer is None or (isinstance(self.shuffle_buffer, int)
                                               and not isinstance(self.shuffle_buffer, bool)
                                               and self.shuffle_buffer >= 1),
               f"data.shuffle_buffer must be an integer >= 1, got {self.shuffle_buffer!r}")
        _check(self.pixel_scale is None or (_is_number(self.pixel_scale) and self.pixel_scale != 0),
               f"data.pixel_scale must be a non-zero number, got {self.pixel_scale!r}")
        _check(self.pixel_offset is None or _is_number(self.pixel_offset),
               f"data.pixel_offset must be a number, got {self.pixel_offset!r}")
        for key in ("text_column", "label_column"):
            value = getattr(self, key)
            _check(value is None or (isinstance(value, str) and value),
                   f"data.{key} must be a column name, got {value!r}")


@dataclass
class TrainConfig(_Section):
    """[train]: the three phases and their optimiser settings.

    Phases: `dense_epochs` of dense training, then `epochs` of pruning
    fine-tune during which the schedule runs, and (after a one-shot prune)
    `finetune_epochs` at fixed masks. Learning rates follow a cosine decay
    within each phase; pruning starts from the smaller `pruning_learning_rate`
    because the network is already trained. `loss`/`metric` default to
    classification; an autoencoder uses `mse`.
    """

    section = "train"
    epochs: int = 4
    dense_epochs: int = 8
    finetune_epochs: int = 2
    # Epochs of a new classification head alone, backbone frozen, before the dense phase
    # (only with [model] from + replace_head; see tfsparse.training.user_model).
    head_epochs: int = 0
    batch_size: int = 128
    learning_rate: float = 2e-3
    pruning_learning_rate: float = 5e-4
    weight_decay: float = 0.0
    loss: str = "sparse_categorical_crossentropy"
    metric: str = "accuracy"
    seed: int = 0
    # Also train the dense model for dense_epochs + epochs (no pruning), as the fair reference for
    # "sparse loses x points": the pruning phase is that many more epochs of training.
    equal_epochs_dense: bool = False

    def __post_init__(self):
        _check(isinstance(self.equal_epochs_dense, bool),
               f"train.equal_epochs_dense must be true or false, got {self.equal_epochs_dense!r}")
        for name in ("epochs", "dense_epochs", "finetune_epochs", "head_epochs"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                   f"train.{name} must be an integer >= 0, got {value!r}")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1,
               f"train.batch_size must be an integer >= 1, got {self.batch_size!r}")
        for name in ("learning_rate", "pruning_learning_rate"):
            value = getattr(self, name)
            _check(_is_number(value) and value > 0, f"train.{name} must be a number > 0, got {value!r}")
        _check(_is_number(self.weight_decay) and self.weight_decay >= 0,
               f"train.weight_decay must be a number >= 0, got {self.weight_decay!r}")
        _check(isinstance(self.seed, int), f"train.seed must be an integer, got {self.seed!r}")
        _check(self.loss in LOSSES, f"train.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        _check(self.metric in METRICS, f"train.metric must be one of {', '.join(METRICS)}, got {self.metric!r}")


@dataclass
class PruningConfig(_Section):
    """[pruning]: TF-MOT magnitude pruning (Zhu & Gupta, 2017, arXiv:1710.01878).

    `begin` and `end` are fractions of the pruning phase and `frequency` is in
    steps at the recipe's full size; all three are rescaled to the steps actually
    run (see `tfsparse.pruning.magnitude.schedule_steps`), so a shortened run still ends
    exactly at `final_sparsity`.

    `policy`: `xnnpack` prunes the 1x1 convolutions only and checks the model
    can take XNNPACK's sparse path (TF-MOT `PruneForLatencyOnXNNPack`, after
    Elsen et al., "Fast Sparse ConvNets", arXiv:1911.09723); `all` prunes every
    prunable layer; anything else is a regular expression over layer names.
    `exclude` (a regex over layer names) keeps matching layers dense whatever
    the policy: e.g. the first 1x1 convolution, which has few weights and
    little redundancy (Fast Sparse ConvNets keeps it dense too).

    `block_size = [1, b]` prunes 1x1 convolutions in blocks of b output channels
    (see `tfsparse.pruning.block`); `block_layers` (a regex over layer names)
    limits blocks to the matching pruned layers, the others stay unstructured.

    `method`: `gradual` (the above, the default) or sparse from the first step
    (`tfsparse.pruning.sparse_training`): `static` (random masks at initialisation, fixed),
    `set` (Mocanu et al. 2018) or `rigl` (Evci et al. 2020, arXiv:1911.11134), which train
    `final_sparsity` sparse for the whole run. They read `distribution` (`uniform` or `erk`),
    and SET/RigL `update_every` (steps at the recipe's full size, rescaled like `frequency`),
    `drop_fraction` (cosine-decayed to 0) and `stop_updates` (fraction of the run after which
    the masks freeze); `schedule`, `initial_sparsity`, `begin`, `end`, `frequency` and `power`
    describe TF-MOT's schedule and are not used by them.
    """

    section = "pruning"
    schedule: str = "polynomial"
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.9
    begin: float = 0.0
    end: float = 0.75
    frequency: int = 100
    power: float = 3.0
    policy: str = "xnnpack"
    exclude: str | None = None
    sparsity_m_by_n: list[int] | None = None
    block_size: list[int] | None = None
    block_layers: str | None = None
    method: str = "gradual"
    distribution: str | None = None
    update_every: int | None = None
    drop_fraction: float | None = None
    stop_updates: float | None = None

    def __post_init__(self):
        self._check_method()
        _check(self.schedule in SCHEDULES,
               f"pruning.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("initial_sparsity", "final_sparsity"):
            value = getattr(self, name)
            _check(_is_number(value) and 0 <= value < 1, f"pruning.{name} must be in [0, 1), got {value!r}")
        _check(self.initial_sparsity <= self.final_sparsity,
               f"pruning.initial_sparsity {self.initial_sparsity} exceeds final_sparsity {self.final_sparsity}")
        for name in ("begin", "end"):
            value = getattr(self, name)
            _check(_is_number(value) and 0 <= value <= 1, f"pruning.{name} must be a fraction in [0, 1], got {value!r}")
        _check(self.begin < self.end, f"pruning.begin {self.begin} must be before pruning.end {self.end}")
        _check(isinstance(self.frequency, int) and self.frequency >= 1,
               f"pruning.frequency must be an integer >= 1 (steps), got {self.frequency!r}")
        _check(_is_number(self.power) and self.power > 0, f"pruning.power must be > 0, got {self.power!r}")
        _check(isinstance(self.policy, str) and self.policy, f"pruning.policy must be a string, got {self.policy!r}")
        if self.policy not in ("xnnpack", "all"):
            try:
                re.compile(self.policy)
            except re.error as e:
                raise ValueError(f"pruning.policy {self.policy!r} is neither xnnpack, all nor a valid regex: {e}")
        if self.exclude is not None:
            try:
                re.compile(self.exclude)
            except (re.error, TypeError) as e:
                raise ValueError(f"pruning.exclude {self.exclude!r} is not a valid regex: {e}")
        if self.sparsity_m_by_n is not None:
            m_n = self.sparsity_m_by_n
            _check(isinstance(m_n, list) and len(m_n) == 2 and all(isinstance(v, int) for v in m_n)
                   and 0 < m_n[0] < m_n[1],
                   f"pruning.sparsity_m_by_n must be [M, N] with 0 < M < N, got {m_n!r}")
        if self.block_size is not None:
            b = self.block_size
            _check(isinstance(b, list) and len(b) == 2 and all(isinstance(v, int) and v >= 1 for v in b),
                   f"pruning.block_size must be [rows, cols] of integers >= 1, got {b!r}")
        _check(not (self.sparsity_m_by_n and self.block_size and self.block_size != [1, 1]),
               "pruning.sparsity_m_by_n and pruning.block_size cannot be combined")
        if self.block_layers is not None:
            _check(self.block_size is not None and self.block_size != [1, 1],
                   "pruning.block_layers needs pruning.block_size (e.g. [1, 4])")
            try:
                re.compile(self.block_layers)
            except (re.error, TypeError) as e:
                raise ValueError(f"pruning.block_layers {self.block_layers!r} is not a valid regex: {e}")

    def _check_method(self):
        """`method` and the sparse-training keys: each key only where its method reads it."""
        if self.method not in PRUNING_METHODS:
            import difflib

            close = difflib.get_close_matches(str(self.method), PRUNING_METHODS, n=2, cutoff=0.5)
            hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(PRUNING_METHODS)}"
            raise ValueError(f"unknown pruning.method {self.method!r} ({hint})")
        for key in ("distribution", "update_every", "drop_fraction", "stop_updates"):
            if getattr(self, key) is not None and key not in METHOD_KEYS[self.method]:
                users = [m for m, keys in METHOD_KEYS.items() if key in keys]
                raise ValueError(f"pruning.{key} has no meaning for pruning.method = {self.method!r} "
                                 f"(used by {', '.join(users)})")
        if self.distribution is not None:
            _check(self.distribution in SPARSE_DISTRIBUTIONS, f"pruning.distribution must be one of "
                   f"{', '.join(SPARSE_DISTRIBUTIONS)}, got {self.distribution!r}")
        if self.update_every is not None:
            _check(isinstance(self.update_every, int) and not isinstance(self.update_every, bool)
                   and self.update_every >= 1,
                   f"pruning.update_every must be an integer >= 1 (steps), got {self.update_every!r}")
        if self.drop_fraction is not None:
            _check(_is_number(self.drop_fraction) and 0 < self.drop_fraction < 1,
                   f"pruning.drop_fraction must be in (0, 1), got {self.drop_fraction!r}")
        if self.stop_updates is not None:
            _check(_is_number(self.stop_updates) and 0 < self.stop_updates <= 1,
                   f"pruning.stop_updates must be a fraction in (0, 1], got {self.stop_updates!r}")
        if self.method != "gradual":
            _check(not self.sparsity_m_by_n, f"pruning.sparsity_m_by_n is not supported with pruning.method = "
                   f"{self.method!r} (only with gradual)")
            _check(self.block_size in (None, [1, 1]), f"pruning.block_size is not supported with pruning.method = "
                   f"{self.method!r} (only with gradual)")


@dataclass
class ExportConfig(_Section):
    """[export]: which TFLite variants `python -m tfsparse.export` writes.

    `int8_weights`: per-channel int8 scales cost 12 bytes per output channel,
    stored twice for a sparse kernel (the DENSIFY output repeats them); on a
    90%-sparse MobileNetV1 x0.5 that is 39% of the int8 file. `per-tensor`
    keeps one scale per tensor (measured: -0.12 accuracy points, 7.6x -> 12.3x
    smaller than dense fp32).

    `output_layer`: export the sub-model from the input up to this layer instead of
    the whole network (an autoencoder's encoder, shipped as a feature extractor).
    """

    section = "export"
    variants: list[str] = field(default_factory=lambda: ["fp32", "fp16", "int8"])
    representative_examples: int = 200
    int8_weights: str = "per-channel"
    output_layer: str | None = None

    def __post_init__(self):
        _check(self.output_layer is None or (isinstance(self.output_layer, str) and self.output_layer.strip()),
               f"export.output_layer must be a layer name, got {self.output_layer!r}")
        _check(isinstance(self.variants, list) and self.variants,
               f"export.variants must be a non-empty list, got {self.variants!r}")
        for v in self.variants:
            _check(v in EXPORT_VARIANTS, f"export.variants: unknown variant {v!r} (known: {', '.join(EXPORT_VARIANTS)})")
        _check(isinstance(self.representative_examples, int) and self.representative_examples >= 1,
               f"export.representative_examples must be an integer >= 1, got {self.representative_examples!r}")
        _check(self.int8_weights in INT8_WEIGHTS,
               f"export.int8_weights must be one of {', '.join(INT8_WEIGHTS)}, got {self.int8_weights!r}")


@dataclass
class RLConfig(_Section):
    """[rl]: environment, DQN hyper-parameters, seeds and the evaluation protocol.

    A recipe with `[rl]` trains a DQN agent (Mnih et al., Nature 2015; Double DQN, van Hasselt et
    al., AAAI 2016) instead of fitting a data set: the agent sees only observations, its actions and
    the environment's reward. The `[pruning]` section prunes the Q-network *during* RL training with
    the same TF-MOT schedules and policies as supervised recipes (`begin`/`end` are fractions of the
    agent's gradient steps), after Graesser et al., "The State of Sparse Training in Deep
    Reinforcement Learning", ICML 2022. No TensorFlow here: recipes validate without it.

        [rl]
        algorithm = "dqn"
        env_id = "FrozenLake-v1"
        env_kwargs = { map_name = "8x8", is_slippery = true }
        total_steps = 200000          # environment steps per agent
        seeds = [0, 1, 2]             # one dense and one sparse agent per seed

    Every step count is in environment steps (summed over the `num_envs` copies stepped in lock-step),
    as in Stable-Baselines3's DQN, so recipes are comparable with its published hyper-parameters.
    """

    section = "rl"
    algorithm: str = "dqn"
    env_id: str = "FrozenLake-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 100_000
    num_envs: int = 4
    buffer_size: int = 50_000
    batch_size: int = 64
    learning_rate: float = 1e-3
    gamma: float = 0.99
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_fraction: float = 0.5  # of total_steps, linear decay from start to end
    learning_starts: int = 1000
    train_frequency: int = 4  # environment steps between gradient updates
    gradient_steps: int = 1  # gradient updates each time
    target_update: int = 1000  # environment steps between target-network copies
    double: bool = True  # Double DQN target: online argmax, target value
    max_grad_norm: float = 10.0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    eval_episodes: int = 1000
    eval_seed: int = 10_000  # evaluation episode i is reset with seed eval_seed + i
    checkpoint_every: int = 10_000  # environment steps between checkpoints (resume)

    def __post_init__(self):
        _check(self.algorithm in RL_ALGORITHMS, f"rl.algorithm must be one of {', '.join(RL_ALGORITHMS)}, got {self.algorithm!r}")
        _check(isinstance(self.env_id, str) and self.env_id, f"rl.env_id must be a gymnasium id, got {self.env_id!r}")
        _check(isinstance(self.env_kwargs, dict), f"rl.env_kwargs must be a table, got {self.env_kwargs!r}")
        for name in ("total_steps", "num_envs", "buffer_size", "batch_size", "train_frequency", "gradient_steps",
                     "target_update", "eval_episodes", "checkpoint_every"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                   f"rl.{name} must be an integer >= 1, got {value!r}")
        _check(isinstance(self.learning_starts, int) and self.learning_starts >= 0,
               f"rl.learning_starts must be an integer >= 0, got {self.learning_starts!r}")
        _check(_is_number(self.learning_rate) and self.learning_rate > 0,
               f"rl.learning_rate must be a number > 0, got {self.learning_rate!r}")
        _check(_is_number(self.gamma) and 0 <= self.gamma <= 1, f"rl.gamma must be in [0, 1], got {self.gamma!r}")
        for name in ("epsilon_start", "epsilon_end", "epsilon_fraction"):
            value = getattr(self, name)
            _check(_is_number(value) and 0 <= value <= 1, f"rl.{name} must be in [0, 1], got {value!r}")
        _check(self.epsilon_end <= self.epsilon_start,
               f"rl.epsilon_end {self.epsilon_end} exceeds rl.epsilon_start {self.epsilon_start}")
        _check(isinstance(self.double, bool), f"rl.double must be true or false, got {self.double!r}")
        _check(_is_number(self.max_grad_norm) and self.max_grad_norm > 0,
               f"rl.max_grad_norm must be a number > 0, got {self.max_grad_norm!r}")
        _check(isinstance(self.seeds, list) and self.seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                                   for s in self.seeds)
               and len(set(self.seeds)) == len(self.seeds),
               f"rl.seeds must be a non-empty list of distinct integers, got {self.seeds!r}")
        _check(isinstance(self.eval_seed, int), f"rl.eval_seed must be an integer, got {self.eval_seed!r}")
        _check(self.batch_size <= self.buffer_size,
               f"rl.batch_size {self.batch_size} exceeds rl.buffer_size {self.buffer_size}")
        try:
            import gymnasium
        except ImportError:
            raise ValueError("[rl] needs gymnasium: pip install gymnasium") from None
        if self.env_id not in gymnasium.envs.registry:
            raise ValueError(str(unknown_name("rl.env_id", self.env_id, gymnasium.envs.registry)))

    def get_config(self):
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def epsilon(self, step: int) -> float:
        """Linear decay from epsilon_start to epsilon_end over epsilon_fraction of total_steps."""
        span = max(1, math.ceil(self.epsilon_fraction * self.total_steps))
        return self.epsilon_end + (self.epsilon_start - self.epsilon_end) * max(0.0, 1 - step / span)


SECTIONS = {cls.section: cls for cls in (ModelConfig, DataConfig, TrainConfig, PruningConfig, ExportConfig)}


@dataclass
class Recipe:
    """A validated recipe. `name` is the recipe file's stem (the run's name)."""

    name: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    pruning: PruningConfig
    export: ExportConfig
    source: str | None = None
    rl: RLConfig | None = None  # [rl]: an agent trained by interaction, optional

    def get_config(self) -> dict[str, dict[str, Any]]:
        config = {s: getattr(self, s).get_config() for s in SECTIONS}
        if self.rl is not None:
            config["rl"] = self.rl.get_config()
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str, source: str | None = None) -> "Recipe":
        for section in config:
            if section not in SECTIONS and section != "rl":
                raise ValueError(f"unknown section [{section}] (known: {', '.join(SECTIONS)}, rl)")
        sections = {}
        for section, section_cls in SECTIONS.items():
            value = config.get(section, {})
            if not isinstance(value, dict):
                raise ValueError(f"[{section}] must be a table, got {value!r}")
            sections[section] = section_cls.from_config(value)
        _check_retrieval(sections)
        if "rl" in config:
            if not isinstance(config["rl"], dict):
                raise ValueError(f"[rl] must be a table, got {config['rl']!r}")
            sections["rl"] = RLConfig.from_config(config["rl"])
        if sections["train"].head_epochs and not sections["model"].replace_head:
            raise ValueError("train.head_epochs trains a new classification head: it needs model.from and "
                             "model.replace_head = true")
        return cls(name=name, source=source, **sections)

    def to_toml(self) -> str:
        return dump_toml(self.get_config())


# A retrieval recipe is one of these values in every section (tfsparse.zoo.splade trains on
# (query, document) pairs with its own loss and metric); a mix would fail deep inside Keras.
RETRIEVAL = {"model.name": "splade_encoder", "data.name": "bbc_retrieval", "train.loss": "in_batch_softmax",
             "train.metric": "mrr_at_10"}


def _check_retrieval(sections: dict) -> None:
    values = {key: getattr(sections[key.split(".")[0]], key.split(".")[1]) for key in RETRIEVAL}
    retrieval = [key for key, value in values.items() if value == RETRIEVAL[key]]
    if retrieval and len(retrieval) < len(RETRIEVAL):
        key = next(k for k in RETRIEVAL if k not in retrieval)
        raise ValueError(f"{key} = {values[key]!r} does not go with {retrieval[0]} = {RETRIEVAL[retrieval[0]]!r} "
                         f"(a retrieval recipe needs {', '.join(f'{k} = {v!r}' for k, v in RETRIEVAL.items())})")


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.key=value` -> (section, key, value); the value is read as TOML."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise UserError(f"--set expects section.key=value, got {text!r}")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words such as --set model.name=mobilenet_v2
    return section, key, value


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Reads, overrides and validates a recipe; every problem is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe not found: {path}")
    try:
        config = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    for text in overrides:
        section, key, value = parse_override(text)
        config.setdefault(section, {})
        if not isinstance(config[section], dict):
            raise UserError(f"--set {text}: [{section}] is not a table")
        config[section][key] = value
    try:
        return Recipe.from_config(config, name=path.stem, source=str(path))
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: {e}") from None


def dump_toml(config: dict[str, dict[str, Any]]) -> str:
    """The two-level tables recipes use, as TOML that `tomllib` reads back unchanged.

    Written by `tomli_w` (strings escaped properly: a regex with a newline or a tab
    round-trips, which a hand-rolled writer got wrong).
    """
    import tomli_w

    try:
        return tomli_w.dumps(config)
    except TypeError as e:
        raise TypeError(f"cannot write the recipe as TOML: {e}") from None
