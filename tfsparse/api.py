"""The public Python API: every stage of recipe -> train -> export -> inspect -> bench -> report.

Re-exported from `tfsparse` (loaded on first use, so `import tfsparse` stays cheap). In a
notebook, the whole path from a zoo model to a measured sparse file:

    import tensorflow as tf
    import tfsparse

    model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
    recipe = tfsparse.load_recipe("models/mobilenet_v1.toml")
    pruned = tfsparse.prune(model, recipe.pruning, total_steps=100)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=1, callbacks=tfsparse.pruning_callbacks())
    data = tfsparse.convert(tfsparse.strip(pruned), "fp32")
    print(tfsparse.inspect(data).verdict)           # "sparse": XNNPACK takes its sparse path on arm64
    print(tfsparse.bench([data], target="host").speedup())

Conventions: functions return values (results are dataclasses with `to_json()`) and raise
`tfsparse.TfsparseError` subclasses with a one-line message; nothing prints unless asked
(`log=print`). The command-line programs (`tfsparse <command>`) are built on the same code.

Each function here drives one stage package (`tfsparse.training`, `tfsparse.exporting`,
`tfsparse.tflite`, `tfsparse.benchmarking`, `tfsparse.reporting`); the packages are named
apart from the functions so that `tfsparse.export(...)` is always this function.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from tfsparse.errors import ConversionError, KerasVersionError, TfsparseError  # noqa: F401  (re-exported)
from tfsparse.run_folder import RunFolder

__all__ = ["load_recipe", "create_model", "list_models", "prune", "pruning_callbacks", "strip", "train",
           "sparse_training_callback", "doctor", "load_model",
           "convert", "export", "inspect", "twin", "bench", "android_bench", "report", "TrainResult", "Manifest",
           "InspectReport", "Finding", "BenchResults", "AndroidBenchResults", "ReportResult"]


def _json(obj) -> str:
    return json.dumps(obj, indent=2, default=str)


# ---- recipe and model ------------------------------------------------------------------------


def load_recipe(path, overrides: Sequence[str] | Mapping[str, Any] = ()):
    """Reads and validates a recipe TOML (`models/*.toml`).

    Args:
        path: the recipe file.
        overrides: `["section.key=value", ...]` as `--set` takes them (values read as TOML), or
            a mapping `{"section.key": value}` (values used as they are).

    Returns:
        A `tfsparse.recipe.Recipe` (sections `.model`, `.data`, `.train`, `.pruning`, `.export`).

    Raises:
        TfsparseError: a missing file, bad TOML or a bad value (the message names it).

    Example:
        >>> import tfsparse
        >>> recipe = tfsparse.load_recipe("models/mobilenet_v1.toml", {"pruning.final_sparsity": 0.8})
        >>> recipe.pruning.final_sparsity
        0.8
    """
    from tfsparse import recipe as recipe_mod

    if isinstance(overrides, Mapping):
        overrides = [f"{key}={_toml_literal(value)}" for key, value in overrides.items()]
    return recipe_mod.load_recipe(path, list(overrides))


def _toml_literal(value) -> str:
    import tomli_w

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def create_model(name: str, **kwargs):
    """Builds a zoo architecture (timm-style registry; `list_models()` names them).

    The MobileNets satisfy XNNPACK's sparse rules by construction (stride-2 layers as
    ZeroPadding2D + valid, a 3x3 stride-2 stem on 3 channels, GlobalAveragePooling2D then
    Dense). An unknown name raises a TfsparseError suggesting close matches.

    Example:
        >>> import tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> model.output_shape
        (None, 10)
    """
    from tfsparse.zoo import create_model as create

    return create(name, **kwargs)


def list_models() -> list[str]:
    """The zoo's architecture names.

    Example:
        >>> import tfsparse
        >>> "mobilenet_v1" in tfsparse.list_models()
        True
    """
    from tfsparse.zoo import list_models as names

    return names()


# ---- pruning ---------------------------------------------------------------------------------


def _pruning_config(config):
    from tfsparse.recipe import PruningConfig, Recipe

    if isinstance(config, Recipe):
        return config.pruning
    if isinstance(config, PruningConfig):
        return config
    if isinstance(config, Mapping):
        try:
            return PruningConfig.from_config(dict(config))
        except (ValueError, TypeError) as e:
            raise TfsparseError(f"[pruning]: {e}") from None
    raise TfsparseError(f"expected a Recipe, its .pruning section or a [pruning] dict, got {type(config).__name__}")


def prune(model, config, *, total_steps: int | None = None, schedule=None):
    """Wraps the layers a recipe's `[pruning]` policy selects with TF-MOT `prune_low_magnitude`.

    The policy is checked first: with `policy = "xnnpack"` (TF-MOT `PruneForLatencyOnXNNPack`)
    a model XNNPACK cannot run sparse is rejected, naming the layer and why.

    Args:
        model: a Keras (tf_keras) model, e.g. from `create_model`.
        config: a `Recipe`, its `.pruning` section, or a `[pruning]` dict
            (`{"final_sparsity": 0.9, "policy": "xnnpack"}`).
        total_steps: optimizer steps of the pruning phase; the section's `begin`/`end`
            fractions and `frequency` are rescaled to it, ending exactly at `final_sparsity`.
        schedule: a TF-MOT schedule to use instead (then `total_steps` is not needed).

    Returns:
        The wrapped model: compile it and fit with `pruning_callbacks()`; `strip()` it after.

    Raises:
        TfsparseError: the policy rejects the model, or neither `total_steps` nor `schedule`.

    Example:
        >>> import tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> pruned = tfsparse.prune(model, {"final_sparsity": 0.9}, total_steps=10)
        >>> pruned.compile("adam", "sparse_categorical_crossentropy")
    """
    from tfsparse.pruning import magnitude as pruning

    config = _pruning_config(config)
    if config.method != "gradual":
        raise TfsparseError(f"prune wraps layers for TF-MOT's gradual pruning; pruning.method {config.method!r} "
                            "trains sparse from the first step: use tfsparse.sparse_training_callback or tfsparse.train")
    pruning.check_policy(model, config)
    if schedule is None:
        if not total_steps or total_steps < 1:
            raise TfsparseError("prune: pass total_steps (optimizer steps of the pruning phase) or a schedule")
        schedule = pruning.make_schedule(config, pruning.schedule_steps(config, total_steps, total_steps))
    return pruning.apply_pruning(model, config, schedule)


def pruning_callbacks(log_dir: str | None = None) -> list:
    """The Keras callbacks a pruned model's `fit` needs: TF-MOT's `UpdatePruningStep`, and
    `PruningSummaries` (per-layer sparsity for TensorBoard) when `log_dir` is given.

    Example:
        >>> import tfsparse
        >>> [type(c).__name__ for c in tfsparse.pruning_callbacks()]
        ['UpdatePruningStep']
    """
    import tensorflow_model_optimization as tfmot

    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    if log_dir:
        callbacks.append(tfmot.sparsity.keras.PruningSummaries(log_dir=str(log_dir)))
    return callbacks


def strip(model):
    """Removes the pruning wrappers: plain Keras layers whose kernels hold the zeros.

    Block-pruned 1x1 convolutions become plain Conv2D again. Convert the result, not the
    wrapped model.

    Example:
        >>> import tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> plain = tfsparse.strip(tfsparse.prune(model, {"final_sparsity": 0.9}, total_steps=10))
        >>> len(plain.layers) == len(model.layers)
        True
    """
    from tfsparse.pruning import magnitude as pruning

    return pruning.strip(model)


def sparse_training_callback(model, config, total_steps: int, *, seed: int = 0, gradient_batch=None,
                             log_dir: str | None = None):
    """Sparse from the first step: the Keras callback that trains `model` with static, SET or RigL masks.

    The recipe's `[pruning]` section decides: `method` ("static", "set", "rigl"), `distribution`
    ("uniform", "erk"), `final_sparsity`, the policy's layers, and for SET/RigL `update_every`,
    `drop_fraction` (cosine-decayed) and `stop_updates`, here over `total_steps` optimizer steps.
    After every step the masked weights and their optimizer slots are set to exactly zero; the
    model stays plain Keras, ready for `convert`. (`tfsparse.pruning.sparse_training`.)

    Args:
        model: a compiled Keras (tf_keras) model.
        config: a `Recipe`, its `.pruning` section, or a `[pruning]` dict.
        total_steps: optimizer steps the fit will run.
        seed: seeds the masks and SET's regrowth.
        gradient_batch: `rng -> (x, y)`, the batch RigL computes its dense gradient on (rigl only).
        log_dir: TensorBoard folder for per-layer sparsity and connections changed per update.

    Example:
        >>> import numpy as np, tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> model.compile("adam", "sparse_categorical_crossentropy")
        >>> cb = tfsparse.sparse_training_callback(model, {"method": "set", "final_sparsity": 0.9}, total_steps=100)
        >>> model.fit(x, y, epochs=1, callbacks=[cb])                      # doctest: +SKIP
    """
    from tfsparse.pruning import sparse_training

    config = _pruning_config(config)
    if config.method == "gradual":
        raise TfsparseError("sparse_training_callback needs pruning.method static, set or rigl (gradual: use prune)")
    if config.method == "rigl" and gradient_batch is None:
        raise TfsparseError("sparse_training_callback: rigl needs gradient_batch (rng -> (x, y))")
    return sparse_training.callback_for(model, config, total_steps, seed=seed, gradient_batch=gradient_batch,
                                        log_dir=log_dir)


# ---- training --------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What `train` produced: the run folder and its `metrics.json`."""

    run_dir: Path
    metrics: dict

    @property
    def dense_model(self) -> Path:
        return RunFolder(self.run_dir).dense_model

    @property
    def sparse_model(self) -> Path:
        """The pruned model, wrappers stripped."""
        return RunFolder(self.run_dir).sparse_model

    @property
    def sparsity(self) -> float:
        """Zero fraction over the pruned kernels."""
        return self.metrics["overall_sparsity"]

    def to_json(self) -> str:
        return _json({"run_dir": str(self.run_dir), "metrics": self.metrics})


def train(recipe, run_dir, *, resume: bool | None = None, overrides: Sequence[str] = (), epochs: int | None = None,
          max_train_examples: int | None = None, from_model: str | None = None, one_shot: str | None = None,
          strategy: str = "default", verbose: bool = False) -> TrainResult:
    """Trains a recipe: the dense phase, then gradual magnitude pruning; checkpointed per epoch.

    With `[pruning] method = "static" | "set" | "rigl"` the run is sparse from the first step
    instead (no dense phase, `dense_epochs + epochs` sparse; `tfsparse.training.from_scratch`),
    e.g. `overrides=['pruning.method="rigl"', 'pruning.distribution="erk"']`.

    Args:
        recipe: a recipe file or a `Recipe` (from `load_recipe`).
        run_dir: the run folder (config.toml, dense.keras, sparse.keras, metrics.json, logs/).
        resume: continue the run in `run_dir` (None: resume if `run_dir` holds one). A killed
            run loses at most the epoch in progress; the pruning schedule continues.
        overrides: `section.key=value` strings (recipe files only).
        epochs: cap every phase at this many epochs.
        max_train_examples: train on the first N examples only (the schedule rescales).
        from_model: start from this trained dense `.keras` model.
        one_shot: "magnitude" or "random": prune once, then fine-tune at fixed masks.
        strategy: "default", "mirrored" or "multi-worker".
        verbose: one progress line per epoch on stdout.

    Returns:
        A `TrainResult` (`.sparse_model`, `.sparsity`, `.metrics`).

    Example:
        >>> import tfsparse
        >>> result = tfsparse.train("models/mobilenet_v1.toml", "/tmp/mnv1_smoke",
        ...                         epochs=1, max_train_examples=256)           # doctest: +SKIP
        >>> round(result.sparsity, 2)                                            # doctest: +SKIP
        0.9
    """
    from tfsparse.training import command as train_mod
    from tfsparse.training.run_state import STATE

    run_dir = Path(run_dir)
    if resume is None:
        resume = (run_dir / STATE).is_file()
    metrics = train_mod.run(recipe, run_dir, resume=resume, overrides=overrides, epochs=epochs,
                            max_train_examples=max_train_examples, from_model=from_model, one_shot=one_shot,
                            strategy=strategy, verbose=verbose, log=print if verbose else (lambda line: None))
    return TrainResult(run_dir, metrics)


# ---- conversion and export -------------------------------------------------------------------


def convert(model, variant: str = "fp32", **kwargs) -> bytes:
    """Keras model -> the bytes of a .tflite file, exactly as the export stage converts it.

    Batch 1, signature `serving_default` (`image` -> `probabilities` by default), and with
    `sparse=True` (the default) weights with >= 30% zeros stored sparse behind DENSIFY ops.
    Every keyword is documented in `tfsparse.exporting.converter.convert` (`sparse`,
    `representative_data` for int8, `int8_weights`, `input_names`, `output_name`).

    Args:
        model: a Keras model, pruning wrappers stripped.
        variant: "fp32", "fp16", "int8-dynamic" or "int8".

    Raises:
        TfsparseError: a bad variant or option. ConversionError: the converter failed.

    Example:
        >>> import tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> len(tfsparse.convert(model, "fp16")) > 0
        True
    """
    from tfsparse.exporting.converter import convert as convert_model

    return convert_model(model, variant, **kwargs)


@dataclass
class Manifest:
    """An export folder's `manifest.json` (schema in `tfsparse.exporting.manifest`)."""

    path: Path
    data: dict

    @property
    def files(self) -> list[dict]:
        """One entry per .tflite: path, variant, bytes, runs, score, parity, xnnpack verdict."""
        return self.data["files"]

    @property
    def failed(self) -> list[dict]:
        """The files that do not run with LiteRT's default delegate (kept in `failed/`)."""
        return [f for f in self.files if not f["runs"]]

    def file(self, variant: str = "fp32", dense: bool = False) -> Path:
        """The path of one exported file."""
        for entry in self.files:
            if entry["variant"] == variant and entry["dense"] == dense:
                return self.path.parent / entry["path"]
        raise TfsparseError(f"{self.path}: no {'dense' if dense else 'sparse'} {variant} file")

    def to_json(self) -> str:
        return _json(self.data)


def export(model_or_path, out_dir, *, recipe=None, dense_model=None, variants: Sequence[str] | None = None,
           int8_weights: str | None = None, name: str | None = None, data: bool = True,
           log=None) -> Manifest:
    """Writes the dense baseline and each sparse variant, checked and measured, plus manifest.json.

    Every file is run through LiteRT with its default delegate and compared with Keras; one
    that does not run goes to `failed/` and is marked `"runs": false` in the manifest.

    Args:
        model_or_path: a run folder (`runs/<name>`), a `.keras` file, or a Keras model in memory
            (pruning wrappers stripped).
        out_dir: the folder to write.
        recipe: a `Recipe` or recipe file: its data set gives labels, normalisation, the test
            split (accuracy) and int8 calibration; its `[export]` the default variants. A run
            folder has its own. Without one there is no data: no score, no int8.
        dense_model: the unpruned baseline (file or model); default: the sparse model
            converted without the sparsity optimisation.
        variants: sparse variants (default: the recipe's `[export] variants`, or ["fp32"]
            without a recipe).
        int8_weights: "per-channel" or "per-tensor" (default: the recipe's).
        name: file name prefix (default: the run folder's, the file's or the model's name).
        data: False skips the data set even with a recipe (faster; no score, no int8).
        log: called with one line per file written (e.g. `print`); default silent.

    Returns:
        The `Manifest`.

    Example:
        >>> import tempfile, tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> manifest = tfsparse.export(model, tempfile.mkdtemp())
        >>> [f["path"] for f in manifest.files]
        ['mobilenet_v1.dense.fp32.tflite', 'mobilenet_v1.sparse.fp32.tflite']
    """
    from tfsparse.exporting import exporter as export_mod
    from tfsparse.exporting import manifest as manifest_mod
    from tfsparse.recipe import Recipe

    out_dir = Path(out_dir)
    if isinstance(recipe, (str, Path)):
        recipe = load_recipe(recipe)
    if isinstance(model_or_path, (str, Path)) and (Path(model_or_path).is_dir() or recipe is not None):
        source = export_mod.resolve_source(str(model_or_path), recipe)
    else:
        if isinstance(model_or_path, (str, Path)):
            model = Path(model_or_path)
            if not model.is_file() or model.suffix not in (".keras", ".h5"):
                raise TfsparseError(f"{model}: expected a run folder or a .keras/.h5 model file")
            model_name = name or model.stem
        else:
            model, model_name = model_or_path, name or model_or_path.name
        if recipe is None:  # no data set: no score, no int8 calibration
            recipe = Recipe.from_config({"model": {"name": model_name}, "export": {"variants": ["fp32"]}},
                                        name=model_name)
            data = False
        source = export_mod.Source(model_name, recipe, str(recipe.source or ""), model, None, None)
    if name:
        source.name = name
    if dense_model is not None:
        source.dense_model = dense_model
    chosen = list(variants) if variants else list(source.recipe.export.variants)
    if not data and variants is None:
        chosen = [v for v in chosen if v != "int8"] or ["fp32"]
    chosen = export_mod.parse_variants(",".join(chosen), source.recipe)
    export_mod.export(source, chosen, out_dir, int8_weights or source.recipe.export.int8_weights,
                      data=data, log=log)
    return Manifest(out_dir / manifest_mod.MANIFEST_NAME,
                    json.loads((out_dir / manifest_mod.MANIFEST_NAME).read_text()))


# ---- inspect and twin ------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One XNNPACK warning: a stable `code` (`tfsparse.tflite.xnnpack.FINDINGS` lists them) and the
    message in plain words. Match on the code, never on the message."""

    code: str
    message: str


@dataclass
class InspectReport:
    """What `inspect` found in a .tflite: sizes, sparse tensors, and XNNPACK's verdict.

    `verdict` is "sparse" when at least one channel-first cluster will run XNNPACK's sparse
    kernels on the target; `reasons` say why in plain words; `findings` are the warnings as
    typed values; `details` is the full report (`python -m tfsparse.inspect --json`).
    """

    file: str | None
    target: str
    bytes: int
    gzip_bytes: int
    sparse_tensors: int
    densify_ops: int
    verdict: str
    sparse_clusters: int
    reasons: list[str]
    findings: list[Finding]
    details: dict = field(repr=False)

    def has(self, code: str) -> bool:
        """True if a finding with this code was reported."""
        return any(f.code == code for f in self.findings)

    def to_json(self) -> str:
        return _json(dataclasses.asdict(self))

    def __str__(self) -> str:
        from tfsparse.tflite.inspector import format_report

        return format_report(self.details)


def _read(path_or_bytes, what: str = "file") -> tuple[bytes, str | None]:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), None
    path = Path(path_or_bytes)
    try:
        return path.read_bytes(), str(path)
    except OSError as e:
        raise TfsparseError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def load_model(path):
    """Loads a saved Keras model as tfsparse trains it: tf_keras `.keras`/`.h5`/SavedModel, or a Keras 3
    `.keras` rebuilt as an equivalent tf_keras model (outputs checked within 1e-5).

    Raises:
        TfsparseError: a missing or unreadable file, or a Keras 3 layer with no tf_keras counterpart
            (the message names it).

    Example:
        >>> import tfsparse
        >>> model = tfsparse.load_model("my_keras3_model.keras")   # doctest: +SKIP
    """
    from tfsparse.training.user_model import load_model as load

    return load(path, "load_model")[0]


def doctor(model, *, predict: bool = True, fold_batchnorm: bool = False):
    """Makes a Keras model XNNPACK-ready: what blocks the sparse path, where, why, and the rewrite.

    Args:
        model: a tf_keras model, or the path of a saved one (Keras 3 `.keras` files too).
        predict: also predict, from two TFLite conversions at a placeholder 90% sparsity, which
            share of the 1x1-convolution work XNNPACK runs sparse before and after the rewrite.
        fold_batchnorm: fold BatchNormalization into the convolutions now; by default it stays
            (fine-tuning and pruning need it; the converter folds it at export, zeros intact).

    Returns:
        A `tfsparse.doctoring.doctor.DoctorReport`: `.changes` (each `exact` or not, checked on a
        batch), `.fixed_model`, `.input_preprocessing` (moved out of the graph), `.policy_before` /
        `.policy_after` (TF-MOT PruneForLatencyOnXNNPack: None = accepted), `.before` / `.after`
        (predictions: `.verdict`, `.sparse_share`); `str(report)` is the command's output.
        `tfsparse.doctoring.doctor.save_fixed(report, "fixed.keras")` writes the model with its record.

    Example:
        >>> import tensorflow as tf, tfsparse
        >>> net = tf.keras.applications.MobileNetV2((64, 64, 3), alpha=0.35, weights=None, classes=10)
        >>> report = tfsparse.doctor(net)
        >>> report.policy_after is None, report.before.verdict, report.after.verdict, report.after.sparse_share
        (True, 'dense', 'sparse', 1.0)
    """
    from tfsparse.doctoring.doctor import doctor as run

    source = "model"
    if isinstance(model, (str, Path)):
        source = str(model)
        model = load_model(model)
    return run(model, source, predict=predict, fold_batchnorm=fold_batchnorm)


def inspect(path_or_bytes, target: str = "arm64") -> InspectReport:
    """Reads a .tflite and predicts whether XNNPACK runs it sparse (no TensorFlow needed).

    Args:
        path_or_bytes: a .tflite path or its bytes.
        target: "arm64" (phones) or "x86-avx" (a PC: always dense).

    Returns:
        An `InspectReport`; `str(report)` is the human-readable report.

    Raises:
        TfsparseError: an unreadable or malformed file (one line naming the problem).

    Example:
        >>> import tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> report = tfsparse.inspect(tfsparse.convert(model))
        >>> report.verdict, report.has("no_sparse_tensor")
        ('dense', True)
    """
    from tfsparse.tflite.inspector import inspect_bytes

    data, path = _read(path_or_bytes)
    try:
        full = inspect_bytes(data, target)
    except TfsparseError as e:
        raise type(e)(f"{path}: {e}" if path else str(e)) from None
    x = full["xnnpack"]
    return InspectReport(file=path, target=target, bytes=full["bytes"], gzip_bytes=full["gzip_bytes"],
                         sparse_tensors=len(full["sparse_tensors"]), densify_ops=full["densify_ops"],
                         verdict="sparse" if x["sparse_clusters"] else "dense",
                         sparse_clusters=x["sparse_clusters"], reasons=list(x["reasons"]),
                         findings=[Finding(f["code"], f["message"]) for f in x["findings"]],
                         details={"file": path, **full} if path else full)


def twin(path_or_bytes) -> bytes:
    """The dense twin of a sparse .tflite: the same weights, zeros included, stored dense.

    Every sparse constant is decoded in place and every DENSIFY op removed, so the twin
    computes what the sparse file computes (bit for bit in fp32) on XNNPACK's dense path:
    the fair baseline for "what does the sparse path gain". A file without sparse tensors
    comes back unchanged. No TensorFlow needed.

    Example:
        >>> import tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> dense = tfsparse.twin(tfsparse.convert(model))
        >>> tfsparse.inspect(dense).sparse_tensors
        0
    """
    from tfsparse.tflite.twin import dense_twin

    data, _ = _read(path_or_bytes)
    return dense_twin(data)


# ---- benchmarks and report -------------------------------------------------------------------


@dataclass
class BenchResults:
    """A benchmark run: per-file timings and, per sparse file, its speedups.

    `results`: one dict per timed file (`path`, `median_ms`, `p90_ms`, `runs`, `error`,
    `max_abs_diff_vs_host`, `twin_of` for a dense twin). `pairs`: one dict per speedup
    (`sparse`, `baseline`, `baseline_kind` "same_weights" or "unpruned_dense", `speedup`).
    `report` is the whole JSON document `python -m tfsparse.bench --json` writes.
    """

    target: str
    litert_version: str
    results: list[dict]
    pairs: list[dict]
    report: dict = field(repr=False)

    def speedup(self, sparse: str | Path | None = None, baseline_kind: str = "same_weights") -> float | None:
        """Baseline ms / sparse ms for `sparse` (default: the first sparse file), "same_weights"
        (its dense twin: what XNNPACK's sparse path gains) or "unpruned_dense"."""
        for p in self.pairs:
            if p["baseline_kind"] == baseline_kind and (sparse is None or p["sparse"] == str(sparse)):
                return p["speedup"]
        return None

    def to_json(self) -> str:
        return _json(self.report)


def bench(files, target: str = "host", *, runs: int = 10, warmup: int = 2, threads: int = 1,
          timeout: float = 180.0, seed: int = 0, tolerance: float = 1e-4, litert_version: str | None = None,
          cpu: str | None = None, log=None) -> BenchResults:
    """Times .tflite files interleaved; each sparse file beside its dense twin (same weights).

    Args:
        files: .tflite paths, export folders, bytes, or a `{name: bytes}` mapping.
        target: "host" (this CPU; XNNPACK never runs sparse on x86 with AVX) or "arm64-emu"
            (the aarch64 LiteRT wheel under qemu-user, provisioned on first use into the cache).
        runs, warmup, threads: timed runs and warm-ups per file, interpreter threads.
        timeout: seconds one file may take to load and run once.
        seed, tolerance: seeded random inputs; largest |target - host| difference counted a match.
        litert_version: the ai-edge-litert version to run on arm64-emu (default: the host's).
        cpu: the CPU qemu emulates for arm64-emu (default: `tfsparse.benchmarking.arm64.DEFAULT_CPU`, a
            Cortex-A76: NEON without SVE/SME, like most phones).
        log: called with progress lines (e.g. `print`); default silent.

    Returns:
        `BenchResults`; `.speedup()` is the first sparse file's ratio against its twin.

    Example:
        >>> import tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> results = tfsparse.bench({"m.dense": tfsparse.convert(model, sparse=False)}, runs=2)
        >>> results.results[0]["median_ms"] > 0
        True
    """
    from tfsparse.benchmarking import arm64
    from tfsparse.benchmarking import bench as bench_mod

    if target not in ("host", "arm64-emu"):
        raise TfsparseError(f"unknown target {target!r} (choose from host, arm64-emu)")
    if runs < 1 or threads < 1 or warmup < 0 or timeout <= 0:
        raise TfsparseError("runs and threads must be >= 1, warmup >= 0 and timeout > 0")
    if isinstance(files, (str, Path, bytes, bytearray)):
        files = [files]
    with tempfile.TemporaryDirectory(prefix="tfsparse-api-bench.") as tmp:
        items = files.items() if isinstance(files, Mapping) else ((None, f) for f in files)
        paths = []
        for i, (label, item) in enumerate(items):
            if isinstance(item, (bytes, bytearray, memoryview)):
                path = Path(tmp) / f"{label or f'model{i}'}.tflite"
                path.write_bytes(bytes(item))
                paths.append(str(path))
            else:
                paths.append(str(item))
        model_files, pairs = bench_mod.collect(paths)
        if target == "host":
            if cpu:
                raise TfsparseError("cpu applies to target arm64-emu only")
            version = arm64.host_litert_version()
            if litert_version and litert_version != version:
                raise TfsparseError(f"litert_version {litert_version}: the host target runs the installed "
                                    f"ai-edge-litert {version}")
            runner = bench_mod.host_runner()
        else:
            runtime = arm64.provision(litert_version, cpu=cpu or arm64.DEFAULT_CPU)
            version, runner = runtime.litert_version, bench_mod.Runner(runtime.argv(), runtime.env())
        rep = bench_mod.measure(model_files, pairs, target, runner, version, threads, warmup, runs, timeout,
                                seed, tolerance, log=log or (lambda line: None))
    return BenchResults(rep["target"], rep["litert_version"], rep["results"], rep["pairs"], rep)


@dataclass
class AndroidBenchResults:
    """A benchmark session on an Android device: one row per file and thread count.

    `rows`: dicts with `model`, `path`, `threads`, `status`, `avg_ms`, `median_ms`,
    `speedup_vs_twin` (against the same weights stored dense: what XNNPACK's sparse path gains
    on this phone), `speedup_vs_dense` (against the unpruned dense file), `sparse_engaged` (the
    op profile shows XNNPACK's sparse kernels). `out` holds results.json/csv and summary.md.
    """

    out: Path
    device: dict
    settings: dict
    rows: list[dict]

    def speedup(self, sparse: str | Path | None = None, threads: int = 1, baseline_kind: str = "same_weights"):
        """The first matching sparse file's ratio at `threads`: vs its twin, or "unpruned_dense"."""
        key = "speedup_vs_twin" if baseline_kind == "same_weights" else "speedup_vs_dense"
        for r in self.rows:
            if r["threads"] == threads and r[key] is not None and (sparse is None or r["path"] == str(sparse)):
                return r[key]
        return None

    def to_json(self) -> str:
        return _json({"out": str(self.out), "device": self.device, "settings": self.settings, "results": self.rows})


def android_bench(files, *, benchmark_binary=None, out=None, threads: Sequence[int] = (1, 2, 4), runs: int = 50,
                  warmup: int = 1, serial: str | None = None, avd: str | None = None, adb: str | None = None,
                  twins: bool = True, xnnpack: bool = True, op_profiling: bool = True, timeout: float | None = None,
                  log=None) -> AndroidBenchResults:
    """Times .tflite files on an Android phone or emulator over adb with LiteRT's benchmark_model.

    The same run as `tfsparse android-bench` (and `android_bench/run.sh`): pushes the files,
    each sparse file's dense twin and the binary, runs every file at every thread count,
    cleans the device, writes the report. The only place tfsparse measures real phone speed.

    Args:
        files: .tflite paths and/or export folders (sparse files pair with their dense file).
        benchmark_binary: LiteRT's `benchmark_model` for the device's ABI (default:
            $TFSPARSE_BENCHMARK_MODEL); `tfsparse android-bench --help` says where to get one.
        out: report folder (default bench/android/<time>).
        threads, runs, warmup: thread counts; benchmark_model's --num_runs / --warmup_runs.
        serial, avd, adb: the device (default: the only one attached), an AVD to boot, adb's path.
        twins, xnnpack, op_profiling: time dense twins; XNNPACK delegate on; per-op profile
            (how `sparse_engaged` is known).
        log: called with progress lines; default silent.

    Returns:
        `AndroidBenchResults`.

    Raises:
        TfsparseError: no binary, no adb, no device, a binary for another ABI (one line each).

    Example:
        >>> import tfsparse
        >>> results = tfsparse.android_bench(["export/mobilenet_v1"], threads=[1, 4])   # doctest: +SKIP
        >>> results.speedup(threads=4)                                                    # doctest: +SKIP
    """
    from tfsparse.benchmarking import android

    argv = [str(f) for f in ([files] if isinstance(files, (str, Path)) else files)]
    argv += ["--threads", ",".join(str(n) for n in threads), "--runs", str(runs), "--warmup", str(warmup)]
    for flag, value in (("--benchmark-binary", benchmark_binary), ("--out", out), ("--serial", serial),
                        ("--avd", avd), ("--adb", adb), ("--timeout", timeout)):
        if value is not None:
            argv += [flag, str(value)]
    argv += [flag for flag, on in (("--no-twins", twins), ("--no-xnnpack", xnnpack),
                                   ("--no-op-profiling", op_profiling)) if not on]
    try:
        args = android.build_parser().parse_args(argv)
    except SystemExit:  # argparse already named the bad value on stderr
        raise TfsparseError(f"android_bench: invalid arguments {argv}") from None
    session = android.run(args, log=log or (lambda line: None))
    rows = [{k: v for k, v in dataclasses.asdict(r).items() if k != "raw_output"} for r in session.results]
    return AndroidBenchResults(session.out, session.device, session.settings, rows)


@dataclass
class ReportResult:
    """The files `report` wrote (report.md first) and the summarised point."""

    written: list[Path]
    point: dict

    def to_json(self) -> str:
        return _json({"written": [str(p) for p in self.written], "point": self.point})


def report(out_dir, name: str, *, run_dir=None, export_dir=None, bench_dir=None, title: str | None = None,
           model_card: bool = False) -> ReportResult:
    """Writes the trade-off report (report.md, results.csv/json, plots) of one trained,
    exported and benchmarked model, from the stages' JSON files only.

    Args:
        out_dir: where to write (the pipeline uses `reports/<name>`).
        name: the model's name.
        run_dir, export_dir, bench_dir: the stages' folders (default: `runs/<name>`,
            `export/<name>`, `<out_dir>/bench` with host.json / arm64-emu.json / android/).
        title: the report's title.
        model_card: also write the model card `README.md` into `export_dir`.

    Example:
        >>> import tfsparse
        >>> tfsparse.report("reports/mobilenet_v1", "mobilenet_v1").written[0]   # doctest: +SKIP
        PosixPath('reports/mobilenet_v1/report.md')
    """
    from tfsparse.reporting import report as report_mod

    out_dir = Path(out_dir)
    run_dir = Path(run_dir or Path("runs") / name)
    export_dir = Path(export_dir or Path("export") / name)
    bench_dir = Path(bench_dir or out_dir / "bench")
    point = report_mod.collect_point(name, run_dir, export_dir, bench_dir)
    written = report_mod.write(out_dir, title or f"{name}: dense vs sparse", [point])
    if model_card:
        from tfsparse.reporting import model_card as card

        written.append(card.write(export_dir, bench_dir, run_dir))
    return ReportResult(written, point)

