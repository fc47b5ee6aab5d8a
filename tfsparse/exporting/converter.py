"""Keras -> TFLite: the one conversion every tfsparse file goes through.

The export stage, the structure study and the test graphs all call `convert`, so a file
timed or inspected anywhere is built exactly like the files users ship:

- a `tf.function` with a batch-1 input signature (`serving_default`, input and output
  named: `image` -> `probabilities` unless told otherwise), converted from its concrete
  function with only the model's variables attached (the converter would otherwise
  serialise every Keras layer first: ~5 s more on 2 cores, the same bytes);
- `sparse=True` adds `Optimize.EXPERIMENTAL_SPARSITY`: weights with >= 30% zeros are
  stored compressed behind a DENSIFY op, the pattern XNNPACK's sparse path looks for;
- variants: `fp32`, `fp16` (weights stored fp16), `int8-dynamic` (int8 weights, float
  activations), `int8` (full integer, calibrated on `representative_data`, float input and
  output so app code is the same for every variant);
- `int8_weights="per-tensor"`: one scale per int8 tensor instead of one per output channel.

    import tfsparse
    model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
    data = tfsparse.convert(model, "fp16")        # bytes of a .tflite

The converter's C++ log is captured; its error lines end up in the `ConversionError`.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from tfsparse.errors import ConversionError, TfsparseError, one_line
from tfsparse.stderr import captured_stderr

VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8")
INT8_WEIGHTS = ("per-channel", "per-tensor")
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def convert(model, variant: str = "fp32", *, sparse: bool = True,
            representative_data: Callable[[], Iterable[list]] | None = None,
            int8_weights: str = "per-channel", input_names: str | Sequence[str] | None = None,
            output_name: str | None = None, input_dtype=None, input_shape: Sequence[int] | None = None) -> bytes:
    """One TFLite flatbuffer of `model` with the `serving_default` signature, batch 1.

    Args:
        model: a Keras model (tf.keras, i.e. tf_keras); pruning wrappers should be stripped.
        variant: one of "fp32", "fp16", "int8-dynamic", "int8".
        sparse: store weights with >= 30% zeros sparse (`Optimize.EXPERIMENTAL_SPARSITY`).
            False gives the dense baseline: same weights, no DENSIFY.
        representative_data: for "int8", a function returning an iterable of
            `[input array]` (batch 1), as `TFLiteConverter.representative_dataset` takes.
        int8_weights: "per-channel" (the converter's default) or "per-tensor" scales.
        input_names: the signature's input name(s); default "image" for a one-input model,
            the Keras input names otherwise.
        output_name: the signature's output name (default "probabilities"); a model with
            several outputs keeps its Keras output names.
        input_dtype: the input's dtype (default: the model's own, e.g. int32 token ids).
        input_shape: the input's shape without the batch (default: the model's own); fixes an
            open dimension, e.g. a text encoder's sequence length, in the file.

    Returns:
        The bytes of the .tflite file.

    Raises:
        TfsparseError: a bad variant, or int8 without representative data.
        ConversionError: the converter failed (its error lines are in the message).

    Example:
        >>> import tfsparse
        >>> model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
        >>> data = tfsparse.convert(model, "fp32", sparse=False)
        >>> data[4:8]
        b'TFL3'
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise TfsparseError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    if int8_weights not in INT8_WEIGHTS:
        raise TfsparseError(f"int8_weights must be one of {', '.join(INT8_WEIGHTS)}, got {int8_weights!r}")
    if variant == "int8" and representative_data is None:
        raise TfsparseError("the int8 variant needs representative_data (calibration inputs)")
    inputs = list(model.inputs)
    if input_names is None:
        names = [INPUT_NAME] if len(inputs) == 1 else [t.name.split(":")[0] for t in inputs]
    else:
        names = [input_names] if isinstance(input_names, str) else list(input_names)
    if len(names) != len(inputs):
        raise TfsparseError(f"{len(names)} input name(s) for a model with {len(inputs)} inputs")
    if input_shape is not None and len(inputs) != 1:
        raise TfsparseError("input_shape applies to a one-input model")
    shapes = [list(input_shape) if input_shape is not None else t.shape[1:] for t in inputs]
    specs = [tf.TensorSpec([1, *shape], tf.as_dtype(input_dtype) if input_dtype is not None else t.dtype,
                           name=name) for t, shape, name in zip(inputs, shapes, names)]
    outputs = list(model.outputs)
    out_names = [output_name or OUTPUT_NAME] if len(outputs) == 1 else list(model.output_names)

    @tf.function(input_signature=specs)
    def serve(*x):
        y = model(x[0] if len(x) == 1 else list(x), training=False)
        return dict(zip(out_names, y if isinstance(y, (list, tuple)) else [y]))

    # The converter saves the function's trackable as a SavedModel first. Handing it the
    # Keras model serialises every layer's functions (~5 s on 2 cores); a plain module
    # holding only the variables is enough and converts to the same bytes in a fraction.
    holder = tf.Module()
    holder.variables_ = list(model.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], holder)
    optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    if variant != "fp32":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    converter.optimizations = optimizations
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.representative_dataset = representative_data
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Float input/output (the default) keeps the app code identical across variants.
    if variant.startswith("int8") and int8_weights == "per-tensor":
        # A private converter switch (tf.lite.TFLiteConverter in TF 2.21); there is no public one.
        converter._experimental_disable_per_channel = True
    with captured_stderr() as log:
        try:
            return converter.convert()
        except Exception as e:  # noqa: BLE001 - the converter raises ConverterError and others
            tail = [line for line in log().splitlines() if "error" in line.lower()][-3:]
            raise ConversionError(f"conversion to {variant} failed: {one_line(e)} {' '.join(tail)}") from None
