"""Export a trained run as sparse-aware TFLite flatbuffers, checked and measured.

    python -m tfsparse.export runs/mobilenet_v1
    python -m tfsparse.export runs/mobilenet_v1 --variants fp32,int8 --out /tmp/mnv1
    python -m tfsparse.export runs/mobilenet_v1 --int8-weights per-tensor
    python -m tfsparse.export my_sparse.keras --recipe models/mobilenet_v1.toml --out export/mine
    python -m tfsparse.export --table export/mobilenet_v1 > export/mobilenet_v1/table.md

For a run folder (`runs/<name>`, written by `python -m tfsparse.train`) it writes into
`export/<name>/` (the run folder's name, which is the recipe name unless the run was
trained with `--out`):

- `<name>.dense.fp32.tflite`: the dense baseline, from `dense.keras`, plain conversion.
- `<name>.sparse.<variant>.tflite` for each variant (default: the recipe's `[export]
  variants`), from the stripped `sparse.keras`, converted with
  `Optimize.EXPERIMENTAL_SPARSITY` so weights with >= 30% zeros are stored compressed
  behind a DENSIFY op, the pattern XNNPACK's sparse path looks for
  (`../shared/docs/xnnpack-sparse.md` sections 2-3). Variants: `fp32`; `fp16` (weights
  stored fp16); `int8-dynamic` (int8 weights, float activations); `int8` (full-integer,
  calibrated on `[export] representative_examples` training images, `TFLITE_BUILTINS_INT8`).
  Lookup tables (an `Embedding`'s GATHER) are not covered by the converter's pass;
  `tfsparse.exporting.sparse_lookup` stores the pruned ones sparse behind a DENSIFY op as well
  (float variants), and the manifest lists them under `lookup_tables`.
- For a retrieval encoder (the data set names `document_sequence_length`):
  `<name>.document.dense.fp32.tflite` and `<name>.document.sparse.<variant>.tflite`, the
  same weights with the input at the document length, for apps that index their own
  documents on the device (manifest `role: "document_encoder"`).
- `manifest.json` (schema in `tfsparse.exporting.manifest`): per file sizes, the ratio to the dense
  baseline, sparse tensor / DENSIFY counts, LiteRT test-split `score` in the recipe's
  `[train] metric` (`accuracy` too when that metric is accuracy, else null), parity with
  Keras (`top1_agreement` null for a regression), `extra` (the data set's own metrics of
  this file, e.g. FrozenLake's success rate) and the inspector's XNNPACK verdict.

Decisions an app developer should know:
- Every file has one signature, `serving_default`, batch 1. Images: input `image` (float32,
  NHWC, already normalised: `pixel * scale + offset`) and output `probabilities` (softmax).
  Other data sets name the input by kind (`tokens`: int32 token ids, the model's own
  dtype; `state`, `log_mel`, `frame`) and describe the transform in the metadata
  (`input.normalisation` is `Splits.preprocessing` as is: tokenizer and vocabulary, log-mel
  parameters). A regression's output is `prediction`.
- `[export] output_layer = "code"` exports the sub-model up to that layer (the speech
  autoencoder's encoder as a feature extractor, output named after the layer): it has no
  task metric, only parity with the same Keras sub-model, and `extra` holds the fraction
  of its outputs that are exactly zero.
- The `int8` variant keeps float input and output (the converter adds QUANTIZE/DEQUANTIZE
  at the edges), so app code is the same for every variant.
- Labels, input normalisation, shapes and layout, sparsity figures (of the pruned kernels,
  embedding tables included), recipe, variant and
  tfsparse version are stored in the file's metadata under the name "tfsparse"
  (`tfsparse.tflite.metadata.read`, or `python -m tfsparse.inspect FILE`).
- Every file is loaded and run with LiteRT's default delegate (XNNPACK) before it is kept.
  One that fails (int8 dynamic-range + sparse does on LiteRT 2.3.0) is moved aside into
  `failed/`, recorded with `"runs": false` and the runtime's message, reported on stderr,
  and the command exits 1 after writing everything else.
- int8 weights are quantized per output channel (the converter's default, safest for
  accuracy). `--int8-weights per-tensor` stores one scale per tensor instead: per-channel
  scales and int64 zero points cost 12 bytes per channel, twice for a sparse 1x1 kernel
  (the DENSIFY output repeats them), which is ~40% of a small sparse int8 file. Check the
  accuracy it reports before shipping it.
- A bare `MODEL.keras` needs `--recipe` (the data set gives the labels, normalisation,
  the test split for accuracy and the int8 calibration images: a file without them is
  not shippable). Its dense baseline is the same model converted without the sparsity
  optimisation, so the size ratio shows the encoding's gain alone.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tfsparse import atomic
from tfsparse._version import __version__
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.errors import first_line, one_line
from tfsparse.exporting.manifest import DOCUMENT_ROLE, MANIFEST_NAME
from tfsparse.recipe import EXPORT_VARIANTS, INT8_WEIGHTS, Recipe, load_recipe
from tfsparse.run_folder import RunFolder
from tfsparse.stderr import captured_stderr

PROG = "tfsparse.export"
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
FAILED_DIR = "failed"
EVAL_BATCH = 256
# Documents per batch (Keras and LiteRT): a (batch, length, vocabulary) logits tensor of 64 x 128 x
# 5000 floats is ~160 MB; EVAL_BATCH documents would be four times that.
DOCUMENT_BATCH = 64
PROBE_EXAMPLES = 16  # seeded random inputs that check a file runs and matches Keras when there is no data


@dataclass
class NoData:
    """Stands in for `datasets.Splits` when a model is exported without a data set: no labels,
    no normalisation, no score; random probe inputs still check that each file runs and
    matches the Keras model (parity)."""

    x_test: Any
    y_test: Any = None
    x_train: tuple = ()
    labels: tuple = ()
    preprocessing: dict = field(default_factory=dict)
    extra_metrics: Any = None
    task_metric: str | None = None


@dataclass
class Source:
    """What to export: the sparse model, its dense baseline and the recipe that made them.

    The models are `.keras` files or Keras models in memory (`tfsparse.export(model, ...)`).
    """

    name: str
    recipe: Recipe
    recipe_path: str
    sparse_model: Path | Any
    dense_model: Path | Any | None  # None: the baseline is the sparse model converted without sparsity
    pruned_layers: list[str] | None  # from the run's metrics.json; None for a bare model


def parse_args(argv):
    parser = ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="run folder (runs/<name>) or a .keras model (with --recipe); "
                                       "with --table: an export folder")
    parser.add_argument("--variants", help=f"comma-separated, from {','.join(EXPORT_VARIANTS)} "
                                           "(default: the recipe's [export] variants)")
    parser.add_argument("--out", help="output folder (default: export/<name>)")
    parser.add_argument("--recipe", help="recipe TOML for a bare .keras model (data, labels, variants)")
    parser.add_argument("--int8-weights", choices=INT8_WEIGHTS,
                        help="int8 weight scales: per output channel or one per tensor (smaller) "
                             "(default: the recipe's [export] int8_weights)")
    parser.add_argument("--table", action="store_true",
                        help="print the README table of an existing export folder and exit")
    return parser.parse_args(argv)


def parse_variants(text: str | None, recipe: Recipe) -> list[str]:
    if text is None:
        return list(recipe.export.variants)
    variants = [v.strip() for v in text.split(",") if v.strip()]
    if not variants:
        raise UserError("--variants: empty list")
    for v in variants:
        if v not in EXPORT_VARIANTS:
            raise UserError(f"--variants: unknown variant {v!r} (known: {', '.join(EXPORT_VARIANTS)})")
    return list(dict.fromkeys(variants))


def _recipe_of_run(run_dir: Path) -> tuple[Recipe, str]:
    """The run's resolved recipe and the path of the recipe it was resolved from."""
    run = RunFolder(run_dir)
    config = run.config
    if not config.is_file():
        raise UserError(f"{run_dir}: no config.toml (not a run folder written by python -m tfsparse.train)")
    recipe = load_recipe(config)
    origin = run.origin()
    recipe.name = Path(origin).stem if origin else run_dir.name
    return recipe, origin or str(config)


def _given_recipe(recipe: str | Recipe) -> tuple[Recipe, str]:
    if isinstance(recipe, Recipe):
        return recipe, str(recipe.source or recipe.name)
    return load_recipe(recipe), str(recipe)


def resolve_source(path: str, recipe_path: str | Recipe | None) -> Source:
    """Checks the user's input (no TensorFlow needed) and says what to export.

    `recipe_path` (a file or a `Recipe`) overrides a run folder's own recipe; a bare model needs it.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such run folder or model file")
    if p.is_dir():
        run = RunFolder(p)
        if not run.sparse_model.is_file():
            raise UserError(f"{path}: no sparse.keras in this folder (has the run finished? "
                            f"python -m tfsparse.train writes it at the end)")
        if not run.dense_model.is_file():
            raise UserError(f"{path}: no dense.keras in this folder")
        if recipe_path:
            recipe, origin = _given_recipe(recipe_path)
        else:
            recipe, origin = _recipe_of_run(p)
        pruned = list(run.read_metrics().get("layer_sparsity", {})) or None
        return Source(run.name, recipe, origin, run.sparse_model, run.dense_model, pruned)
    if p.suffix not in (".keras", ".h5"):
        raise UserError(f"{path}: expected a run folder or a .keras/.h5 model")
    if not recipe_path:
        raise UserError(f"{path}: a bare model needs --recipe (for its labels, normalisation and test data)")
    recipe, origin = _given_recipe(recipe_path)
    return Source(p.stem, recipe, origin, p, None, None)


# ---- messages ---------------------------------------------------------------------------


def _runtime_message(error: Exception) -> str:
    """LiteRT's error on one line; it glues its per-node messages together, so separate them."""
    return re.sub(r"(?<=\S)(failed to delegate|Node number)", r"; \1", one_line(error))


# ---- the TensorFlow side ---------------------------------------------------------------


# Signature names per `Splits.preprocessing["kind"]`; images (no kind) keep image -> probabilities.
INPUT_NAMES = {"tokens": "tokens", "one_hot_state": "state", "log_mel": "log_mel", "log_mel_frame": "frame",
               "observation": "state"}


def metric_score(metric: str | None, out, y) -> float | None:
    """`[train] metric` of model outputs `out` against targets `y`, as Keras computes it in
    `tfsparse.training.trainer.Trainer.score`: top-1 accuracy (labels), or mean squared / absolute error."""
    import numpy as np

    if metric not in ("accuracy", "mse", "mae"):
        return None  # e.g. mrr_at_10: needs a document index, measured by the data set's extra_metrics
    if metric == "accuracy":
        return round(float(np.mean(np.argmax(out, axis=1) == np.asarray(y))), 6)
    error = np.asarray(out, np.float64) - np.asarray(y, np.float64).reshape(np.shape(out))
    return float(np.mean(error ** 2) if metric == "mse" else np.mean(np.abs(error)))


class Exporter:
    """Converts, checks and measures; one instance per export (holds the data and Keras outputs).

    The measurement follows the recipe's `[train] metric`: top-1 accuracy for a classifier,
    mean squared / absolute error for a regression (an autoencoder's reconstruction). With
    `[export] output_layer` the exported network is the sub-model up to that layer (a feature
    extractor): it has no task metric, only parity with the same Keras sub-model.
    """

    def __init__(self, source: Source, splits, int8_weights: str = "per-channel"):
        """`splits`: the recipe's data (`datasets.Splits`), or None to export without data."""
        import numpy as np
        import tensorflow as tf

        from tfsparse.training.input_pipeline import scaled

        tf.get_logger().setLevel("ERROR")
        self.np, self.tf, self.scaled = np, tf, scaled
        self.source, self.splits, self.int8_weights = source, splits, int8_weights
        self.output_layer = source.recipe.export.output_layer
        # The task metric; None for a sub-model (its outputs are features, not the trained target).
        # What the network was trained for (names its output), and the metric scored here (None
        # without data: nothing to score against).
        self.task = None if self.output_layer else source.recipe.train.metric
        self.metric = None if splits is None else self.task
        self.sparse = self.load_model(source.sparse_model)
        self.dense = self.load_model(source.dense_model) if source.dense_model is not None else self.sparse
        # The model's own input dtype: int32 token ids stay integers (an embedding lookup), not float32.
        self.input_dtype = np.dtype(self.sparse.inputs[0].dtype.as_numpy_dtype)
        self.has_data = splits is not None
        if splits is None:
            rng = np.random.default_rng(source.recipe.train.seed)
            shape = (PROBE_EXAMPLES, *self.sparse.input_shape[1:])
            probe = (rng.integers(0, 2, shape) if np.issubdtype(self.input_dtype, np.integer)
                     else rng.uniform(0, 1, shape)).astype(self.input_dtype)
            self.splits = splits = NoData(probe)
        if isinstance(source.sparse_model, (str, os.PathLike)):
            # A model whose input preprocessing `tfsparse doctor --fix` moved out of the graph:
            # the app applies it, so the metadata's formula and the test inputs include it.
            from tfsparse.doctoring import record as doctor_record

            moved = (doctor_record.read(source.sparse_model) or {}).get("input_preprocessing")
            splits.preprocessing = doctor_record.compose(splits.preprocessing, moved)
        self.x_test = self.model_input(splits.x_test)
        self.y_test = np.asarray(splits.y_test)
        expected = tuple(self.x_test.shape[1:])
        for model, path in ((self.sparse, source.sparse_model), (self.dense, source.dense_model)):
            # An open dimension (None: a text encoder's length) takes the data's; the file fixes it.
            if tuple(e if m is None else m for m, e in zip(model.input_shape[1:], expected)) != expected:
                raise UserError(f"{path} takes input {tuple(model.input_shape[1:])}, the recipe's data is {expected}")
        if self.output_layer:
            self.sparse = self.sub_model(self.sparse, source.sparse_model)
            self.dense = (self.sub_model(self.dense, source.dense_model) if source.dense_model is not None
                          else self.sparse)
        # Keras outputs once, on the whole test split: the score and every parity check reuse them.
        self.keras_out = {"sparse": self.sparse.predict(self.x_test, batch_size=EVAL_BATCH, verbose=0)}
        self.keras_out["dense"] = (self.keras_out["sparse"] if self.dense is self.sparse else
                                   self.dense.predict(self.x_test, batch_size=EVAL_BATCH, verbose=0))
        # A retrieval encoder's document side: the same weights at the document length (the data
        # set says so with `document_sequence_length`; its test documents are `y_test`).
        self.document_length = (None if self.output_layer or not self.has_data
                                else splits.preprocessing.get("document_sequence_length"))
        self._keras_documents: dict[str, Any] = {}

    def keras_documents(self, which: str):
        """The Keras model's (`which`: dense/sparse) vectors of the test documents, computed once."""
        model = self.dense if which == "dense" else self.sparse
        key = "sparse" if model is self.sparse else which  # a bare model is its own baseline
        if key not in self._keras_documents:
            self._keras_documents[key] = model.predict(self.documents, batch_size=DOCUMENT_BATCH, verbose=0)
        return self._keras_documents[key]

    @property
    def documents(self):
        """The test documents as model input (token ids at the document length)."""
        return self.model_input(self.splits.y_test)

    def model_input(self, x):
        """Stored examples -> model input, exactly as `tfsparse.training.input_pipeline.batches` feeds them."""
        return self.np.asarray(self.scaled(self.np.asarray(x), self.splits.preprocessing)).astype(self.input_dtype)

    def load_model(self, path):
        if not isinstance(path, (str, os.PathLike)):
            return path  # a Keras model in memory
        try:
            return self.tf.keras.models.load_model(path, compile=False)
        except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad file
            raise UserError(f"cannot load {path}: {one_line(first_line(e))}") from None

    def sub_model(self, model, path: Path):
        """Input -> `[export] output_layer`, sharing the weights (a model loaded from a file is a
        connected functional graph, so the layer's output is reachable from the input)."""
        names = [layer.name for layer in model.layers]
        if self.output_layer not in names:
            raise UserError(f"export.output_layer = {self.output_layer!r}: {path} has no such layer "
                            f"(layers: {', '.join(names)})")
        return self.tf.keras.Model(model.inputs, model.get_layer(self.output_layer).output,
                                   name=f"{model.name}_{self.output_layer}")

    # -- names and meaning of the signature
    @property
    def input_name(self) -> str:
        return INPUT_NAMES.get(self.splits.preprocessing.get("kind"), INPUT_NAME)

    @property
    def output_name(self) -> str:
        if self.output_layer:
            return self.output_layer
        if "output" in self.splits.preprocessing:  # the data set names its output (retrieval: term_weights)
            return self.splits.preprocessing["output"]["name"]
        return OUTPUT_NAME if self.task == "accuracy" else "prediction"

    def output_meaning(self, documents: bool = False) -> str:
        if self.output_layer:
            return f"activations of layer {self.output_layer!r} (features for a downstream model)"
        if "output" in self.splits.preprocessing:
            output = self.splits.preprocessing["output"]
            return output.get("document_meaning", output["meaning"]) if documents else output["meaning"]
        if self.task == "accuracy":
            return "softmax probabilities, index = label"
        return f"regression output, same layout as the training target (trained for {self.task})"

    # -- scores
    def score(self, out) -> float | None:
        """The recipe's metric of outputs `out` on the test split; None for a sub-model."""
        return metric_score(self.metric, out, self.y_test)

    def keras_score(self, which: str) -> float | None:
        return self.score(self.keras_out[which])

    def keras_accuracy(self, which: str) -> float | None:
        return self.keras_score(which) if self.metric == "accuracy" else None

    # -- conversion
    def convert(self, model, variant: str, sparse: bool, documents: bool = False) -> bytes:
        """One TFLite flatbuffer with the `serving_default` signature input -> output
        (`tfsparse.exporting.converter.convert`, the conversion every tfsparse file goes through).

        `documents`: a retrieval encoder's document side, the same model at the document length."""
        from tfsparse.exporting.converter import convert

        shape = (self.document_length,) if documents else self.x_test.shape[1:]
        return convert(model, variant, sparse=sparse, input_names=self.input_name, output_name=self.output_name,
                       input_dtype=self.input_dtype, int8_weights=self.int8_weights, input_shape=shape,
                       representative_data=(lambda: self.representative_dataset(documents)) if variant == "int8" else None)

    def representative_dataset(self, documents: bool = False):
        """`[export] representative_examples` training examples (their documents for a document
        encoder), a seeded sample, one per step."""
        n = min(self.source.recipe.export.representative_examples, len(self.splits.x_train))
        rng = self.np.random.default_rng(self.source.recipe.train.seed)
        chosen = rng.choice(len(self.splits.x_train), size=n, replace=False)
        # Read together: a streamed split (the user's files) decodes them in one pipeline.
        examples = self.model_input((self.splits.y_train if documents else self.splits.x_train)[chosen])
        for i in range(n):
            yield [examples[i:i + 1]]

    # -- running
    def run_tflite(self, data: bytes, x=None, batch: int = EVAL_BATCH):
        """Outputs of the file on model inputs `x` (default: the test split), through LiteRT
        with its default delegate.

        First at the file's own shape (batch 1, what an app does), then resized to
        `batch` so 10k examples take seconds; falls back to batch 1 if a model cannot resize.
        Raises RuntimeError/ValueError with the runtime's message if the file does not run.
        """
        from ai_edge_litert.interpreter import Interpreter

        np = self.np
        x_all = self.x_test if x is None else x
        with captured_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" per load
            interpreter = Interpreter(model_content=data)
            interpreter.allocate_tensors()
            first = self._invoke(interpreter, x_all[:1])
            try:
                interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"],
                                                [batch, *x_all.shape[1:]])
                interpreter.allocate_tensors()
            except (RuntimeError, ValueError):
                interpreter = Interpreter(model_content=data)
                interpreter.allocate_tensors()
                batch = 1
            outputs = []
            for start in range(0, len(x_all), batch):
                x = x_all[start:start + batch]
                n = len(x)
                if n < batch:  # pad the last batch rather than re-allocating for it
                    x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
                outputs.append(self._invoke(interpreter, x)[:n])
        out = np.concatenate(outputs)
        if not np.allclose(out[:1], first, atol=1e-4):
            raise RuntimeError("the batched run disagrees with the batch-1 run on the same example")
        return out

    def _invoke(self, interpreter, x):
        np = self.np
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        if inp["dtype"] in (np.int8, np.uint8):  # integer input: quantize as the app would
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"], copy=False))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] in (np.int8, np.uint8):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.copy()

    def extra(self, data: bytes, out, dense: bool = False) -> dict | None:
        """Task metrics beyond the recipe's metric, of the TFLite file (e.g. FrozenLake's success rate).

        `Splits.extra_metrics` expects the whole network's outputs, so a sub-model gets its own
        figure instead: the fraction of its outputs that are exactly zero (an L1 code's sparsity).
        """
        if self.output_layer:
            return {f"{self.output_layer}_zero_fraction": round(float(self.np.mean(out == 0)), 6),
                    "note": f"on the test split, {self.output_layer!r} outputs of this file"}
        if self.splits.extra_metrics is None:
            return None

        def predict(x):  # no `.model`: metrics that need the Keras model skip themselves
            return self.run_tflite(data, self.model_input(x))

        # The Keras model of the same weights, for what the file does not compute (a retrieval
        # encoder's document index); `.model` stays unset for the metrics above.
        predict.keras_model = self.dense if dense else self.sparse
        return self.splits.extra_metrics(predict)

    def measure(self, data: bytes, dense: bool) -> dict:
        """`runs`, `error`, `metric`, `score`, `accuracy`, `parity` and `extra` of one file."""
        np = self.np
        failed = {"runs": False, "metric": self.metric, "score": None, "accuracy": None, "parity": None, "extra": None}
        try:
            out = self.run_tflite(data)
        except Exception as e:  # noqa: BLE001 - LiteRT raises RuntimeError/ValueError with its message
            return {**failed, "error": _runtime_message(e)}
        reference = self.keras_out["dense" if dense else "sparse"]
        score = self.score(out)
        top1 = None
        if self.task == "accuracy":  # on random inputs too when there is no data
            top1 = round(float(np.mean(np.argmax(out, 1) == np.argmax(reference, 1))), 6)
        return {"runs": True, "error": None, "metric": self.metric, "score": score,
                "accuracy": score if self.metric == "accuracy" else None,
                "parity": {"max_abs_diff": float(np.max(np.abs(out - reference))), "top1_agreement": top1},
                "extra": self.extra(data, out, dense)}

    def measure_documents(self, data: bytes, dense: bool, query_data: bytes | None) -> dict:
        """`measure` for a document encoder's file: parity with Keras on the test documents and, in
        `extra`, retrieval as the app does it: queries through the query file of the same variant
        (`query_data`), documents through this file (`Splits.extra_metrics` with `encode_documents`)."""
        np = self.np
        failed = {"runs": False, "metric": None, "score": None, "accuracy": None, "parity": None, "extra": None}
        try:
            out = self.run_tflite(data, self.documents, batch=DOCUMENT_BATCH)
        except Exception as e:  # noqa: BLE001 - LiteRT raises RuntimeError/ValueError with its message
            return {**failed, "error": _runtime_message(e)}
        reference = self.keras_documents("dense" if dense else "sparse")
        extra = None
        if query_data is not None and self.splits.extra_metrics is not None:
            def predict(x):
                return self.run_tflite(query_data, self.model_input(x))

            predict.keras_model = self.dense if dense else self.sparse
            predict.encode_documents = lambda docs: out  # the test documents, already through this file
            extra = self.splits.extra_metrics(predict)
        return {"runs": True, "error": None, "metric": None, "score": None, "accuracy": None,
                "parity": {"max_abs_diff": float(np.max(np.abs(out - reference))), "top1_agreement": None},
                "extra": extra}

    # -- metadata
    def sparsity(self, model) -> dict:
        """Zero fractions of the pruned layers' kernels (all kernels with zeros for a bare model).

        `prunable_kernel` is the weight TF-MOT prunes (kernel, depthwise kernel or embeddings),
        so a text model's embedding table counts.
        """
        from tfsparse.pruning.magnitude import prunable_kernel

        np = self.np
        layers = {}
        for layer in model.layers:
            try:
                w = prunable_kernel(layer).numpy()
            except ValueError:  # no prunable weight (input, pooling, activity regularisation)
                continue
            if self.source.pruned_layers is not None:
                if layer.name in self.source.pruned_layers:
                    layers[layer.name] = (int(np.sum(w == 0)), int(w.size))
            elif np.any(w == 0):
                layers[layer.name] = (int(np.sum(w == 0)), int(w.size))
        zeros, total = sum(z for z, _ in layers.values()), sum(n for _, n in layers.values())
        return {"overall": round(zeros / total, 6) if total else 0.0,
                "layers": {name: round(z / n, 6) for name, (z, n) in layers.items()},
                "target": self.source.recipe.pruning.final_sparsity}

    def metadata(self, variant: str, dense: bool, sparsity: dict, documents: bool = False) -> dict:
        shape = [1, *self.x_test.shape[1:]]
        pre = dict(self.splits.preprocessing)
        if documents:  # the same tokenizer, padded / truncated to the document length
            shape, pre["sequence_length"] = [1, self.document_length], self.document_length
        # The data set's own formula (log-mel, standardised frame) when it has one; the image one otherwise.
        formula = pre.get("formula") or ("input = pixel * scale + offset" if "scale" in pre else
                                         "input = token ids from the tokenizer in normalisation, 0 = padding"
                                         if pre.get("kind") == "tokens" else
                                         "input = the stored example as is (see normalisation)")
        model = self.dense if dense else self.sparse
        return {"tfsparse_version": __version__, "recipe": self.source.name,
                "recipe_file": self.source.recipe_path, "architecture": self.source.recipe.model.name,
                "variant": variant, "dense": dense, "labels": list(self.splits.labels),
                **({"int8_weights": self.int8_weights} if variant.startswith("int8") else {}),
                **({"output_layer": self.output_layer} if self.output_layer else {}),
                "metric": self.metric,
                "input": {"name": self.input_name, "shape": shape, "dtype": self.input_dtype.name,
                          "layout": pre.get("layout", "NHWC" if "kind" not in pre else "batch x features"), "normalisation": pre, "formula": formula},
                "output": {"name": self.output_name, "shape": [1, *model.output_shape[1:]], "dtype": "float32",
                           "meaning": self.output_meaning(documents)},
                **({"role": DOCUMENT_ROLE} if documents else {}),
                "sparsity": sparsity}


def _progress(entry: dict, out_dir: Path) -> str:
    kind = ("document " if entry.get("role") == DOCUMENT_ROLE else "") + ("dense " if entry["dense"] else "sparse")
    size = f"{entry['bytes'] / 1024:8.1f} KiB  x{entry['size_ratio_vs_dense']:<5.2f}"
    if not entry["runs"]:
        return f"  {entry['variant']:<12} {kind} {size}  FAILS TO RUN  -> {out_dir / entry['path']}"
    x, parity = entry["xnnpack"], entry["parity"]
    score = "" if entry["score"] is None else f"{entry['metric']} {entry['score']:.4f}  "
    agreement = (f"agreement {100 * parity['top1_agreement']:.2f}%" if parity["top1_agreement"] is not None
                 else f"max |diff| {parity['max_abs_diff']:.2g}")
    extra = entry.get("extra") or {}
    highlight = "".join(f"{k} {v:.4f}  " for k, v in extra.items()
                        if k in ("success_rate", "reconstruction_mse") or k.endswith("_zero_fraction"))
    return (f"  {entry['variant']:<12} {kind} {size}  {score}{agreement}  {highlight}"
            f"xnnpack {x['verdict']} ({x['sparse_clusters']} sparse cluster(s))  -> {out_dir / entry['path']}")


def export(source: Source, variants: list[str], out_dir: Path, int8_weights: str = "per-channel", *,
           data: bool = True, log=lambda line: print(line, flush=True)) -> tuple[dict, list[dict]]:
    """Writes every file and the manifest; returns (manifest, failed entries).

    `data=False` exports without the recipe's data set: no score, no int8 calibration; each
    file is still run and compared with Keras on seeded random inputs. `log` gets one line
    per file (None: silent).
    """
    from tfsparse import datasets
    from tfsparse.exporting.sparse_lookup import sparsify_lookup_tables
    from tfsparse.tflite import metadata as tflite_metadata
    from tfsparse.tflite.inspector import inspect_bytes, manifest_summary

    # TensorFlow's start-up writes oneDNN/CUDA-probe lines to fd 2 even at TF_CPP_MIN_LOG_LEVEL=2.
    if not data and "int8" in variants:
        raise UserError("the int8 variant is calibrated on training data: export it with a recipe's data set")
    log = log or (lambda line: None)
    with captured_stderr():
        splits = datasets.load_for(source.recipe) if data else None
        exporter = Exporter(source, splits, int8_weights)
        splits = exporter.splits
    if getattr(splits, "data_report", None) is not None:  # the user's data: say what was read and skipped
        from tfsparse.datasets.streamed import describe

        log(describe(splits.data_report))
    sparse_sparsity = exporter.sparsity(exporter.sparse)
    dense_sparsity = exporter.sparsity(exporter.dense)
    jobs = [("fp32", True, False)] + [(v, False, False) for v in variants]
    if exporter.document_length:  # a retrieval encoder: its document side too (same weights), after the query files
        jobs += [("fp32", True, True)] + [(v, False, True) for v in variants]
    entries, dense_bytes, written = [], {}, {}
    log(f"exporting {source.name}: dense fp32 + sparse {', '.join(variants)}"
        + (" (query and document encoders)" if exporter.document_length else "") + f" -> {out_dir}")
    for variant, dense, documents in jobs:
        model = exporter.dense if dense else exporter.sparse
        data = exporter.convert(model, variant, sparse=not dense, documents=documents)
        tables = []
        if not dense:  # the converter leaves GATHER tables (embeddings) dense; store them sparse
            data, tables = sparsify_lookup_tables(data)
        data = tflite_metadata.embed(data, exporter.metadata(variant, dense, dense_sparsity if dense else sparse_sparsity,
                                                             documents))
        if documents:
            measured = exporter.measure_documents(data, dense, written.get((variant, dense)))
        else:
            measured = exporter.measure(data, dense)
            if measured["runs"]:  # the query file the document file's retrieval metrics go through
                written[(variant, dense)] = data
        report = inspect_bytes(data)
        stem = f"{source.name}.document" if documents else source.name
        name = f"{stem}.{'dense' if dense else 'sparse'}.{variant}.tflite"
        path = name if measured["runs"] else f"{FAILED_DIR}/{name}"
        atomic.write_bytes(out_dir / path, data)
        if measured["runs"] and (out_dir / FAILED_DIR / name).exists():
            (out_dir / FAILED_DIR / name).unlink()  # an earlier export's failure, now fixed
        dense_bytes.setdefault(documents, len(data))  # each encoder's dense fp32 file comes first
        summary = manifest_summary(report)
        entry = {"path": path, "variant": variant, "dense": dense, **({"role": DOCUMENT_ROLE} if documents else {}),
                 "runs": measured["runs"],
                 "error": measured["error"], "bytes": report["bytes"], "gzip_bytes": report["gzip_bytes"],
                 "size_ratio_vs_dense": round(dense_bytes[documents] / len(data), 3),
                 "sparse_tensors": summary["sparse_tensors"], "densify_ops": summary["densify_ops"],
                 "metric": measured["metric"], "score": measured["score"], "accuracy": measured["accuracy"],
                 "parity": measured["parity"], "extra": measured["extra"], "xnnpack": summary["xnnpack"],
                 **({"lookup_tables": tables} if tables else {})}
        entries.append(entry)
        log(_progress(entry, out_dir))
    manifest = {"model": source.name, "architecture": source.recipe.model.name, "recipe": source.recipe_path,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "tfsparse_version": __version__, "int8_weights": int8_weights,
                "test_examples": int(len(exporter.y_test)) if exporter.has_data else 0,
                "metric": exporter.metric, "task_metric": splits.task_metric or exporter.metric,
                **({"output_layer": exporter.output_layer} if exporter.output_layer else {}),
                "keras_score": {w: exporter.keras_score(w) for w in ("dense", "sparse")},
                "keras_accuracy": ({w: exporter.keras_accuracy(w) for w in ("dense", "sparse")}
                                   if exporter.metric == "accuracy" else None),
                "sparsity": sparse_sparsity, "files": entries}
    atomic.write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest, [e for e in entries if not e["runs"]]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        from tfsparse.reporting import export_table as report_export

        return report_export.main([args.source])
    source = resolve_source(args.source, args.recipe)
    variants = parse_variants(args.variants, source.recipe)
    out_dir = Path(args.out) if args.out else Path("export") / source.name
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a folder")
    manifest, failed = export(source, variants, out_dir, args.int8_weights or source.recipe.export.int8_weights)
    for entry in failed:
        print(f"{PROG}: {out_dir / entry['path']} does not run with LiteRT's default delegate: {entry['error']}",
              file=sys.stderr)
    print(f"wrote {len(manifest['files'])} files and {MANIFEST_NAME} to {out_dir}"
          + (f"; {len(failed)} failed to run (kept in {out_dir / FAILED_DIR}, not for shipping)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
