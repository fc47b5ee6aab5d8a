"""Keras 3 models -> equivalent tf_keras models, so that TF-MOT can prune them.

TensorFlow 2.16+ makes `import keras` Keras 3, and a model saved with it (`model.save("m.keras")`)
cannot be read by tf_keras, the Keras TF-MOT 0.8.1 works with: tf_keras fails with "Could not
deserialize class 'Functional'" followed by the whole config (TF-MOT issues #1119, #1167); its
`model.save("m.h5")` writes the legacy HDF5 layout with Keras 3 layer configs, on which tf_keras
fails too ("Unrecognized keyword arguments: ['batch_shape']"). Both
Kerases load in one process here (`TF_USE_LEGACY_KERAS=1` makes `tf.keras` tf_keras while
`import keras` stays Keras 3), so the model is loaded with Keras 3 and rebuilt layer by layer:

1. walk the Keras 3 functional graph (a Sequential is viewed as its functional graph) in
   topological order;
2. map each layer to its tf_keras class through `get_config()`, with the differences Keras 3
   introduced handled (dtype policies as dicts, `batch_shape`, serialized objects carrying a
   `module`, new keys such as `lora_rank`, the `hard_silu` activation that tf_keras lacks and
   Keras 3's `hard_sigmoid` = relu6(x + 3) / 6 where tf_keras' is 0.2 x + 0.5);
3. call it on the mapped inputs and copy the weights;
4. compare both models' outputs on one seeded batch: more than `TOLERANCE` apart is an error.

A layer with no tf_keras counterpart here is named in a one-line `UserError`. Hand-written
because no library converts between the two Keras versions (keras-core's own converters go
the other way and handle saved weights, not graphs).

    import tfsparse.training.keras3 as k3
    model = k3.load("m.keras")           # a tf_keras functional model, same weights, checked
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np

from tfsparse.cli import UserError
from tfsparse.errors import first_line as _first_line  # also used by user_model

TOLERANCE = 1e-5

# Keras 3 class name -> tf_keras layer class name (the same class, config mapped).
SUPPORTED = ("InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization",
             "ReLU", "Activation", "ZeroPadding2D", "GlobalAveragePooling2D", "Reshape", "Flatten", "Dropout",
             "Add", "Multiply", "Rescaling", "Normalization", "Concatenate", "MaxPooling2D", "AveragePooling2D",
             "Embedding", "Softmax", "GlobalMaxPooling2D", "Subtract", "Average", "Maximum", "Minimum",
             "LeakyReLU", "Conv1D", "GlobalAveragePooling1D", "MaxPooling1D", "AveragePooling1D",
             "SpatialDropout2D", "UpSampling2D")
# Keras 3 activations tf_keras names differently or computes differently.
ACTIVATION_NAMES = {"silu": "swish"}


def is_keras3_file(path) -> bool:
    """True for a file written by Keras 3: a `.keras` zip whose metadata.json says keras_version
    3.x, or a legacy HDF5 file (`model.save("m.h5")`) whose root attribute `keras_version` is 3.x.

    Keras 3 still writes `.h5` in the legacy HDF5 layout tf_keras uses, but with its own layer
    configs (`batch_shape`, dtype policies as dicts), which tf_keras cannot deserialize: the
    version attribute is the one reliable way to tell the two apart before loading.
    """
    path = Path(path)
    if path.suffix in (".h5", ".hdf5", ".keras") and path.is_file():
        version = _hdf5_keras_version(path)
        if version is not None:
            return version.startswith("3.")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return False
    return str(meta.get("keras_version", "")).startswith("3.")


def _hdf5_keras_version(path: Path) -> str | None:
    """The root `keras_version` attribute of an HDF5 model file, or None (not HDF5, no attribute)."""
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
    except OSError:  # unreadable: the loader names the file
        return None
    if isinstance(version, bytes):  # h5py < 3 and old Keras wrote bytes attributes
        version = version.decode("utf-8", "replace")
    return None if version is None else str(version)


def load(path, *, check: bool = True):
    """Loads a Keras 3 `.keras` or `.h5` file and returns the equivalent tf_keras model (see module doc)."""
    import keras  # Keras 3: imported only for this

    try:
        model3 = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad file
        raise UserError(f"{path}: Keras 3 cannot load it: {_first_line(e)}") from None
    return convert(model3, source=str(path), check=check)


def convert(model3, *, source: str = "model", check: bool = True):
    """A tf_keras functional model equal to the Keras 3 `model3` (weights copied, outputs checked)."""
    import keras
    import tensorflow as tf

    tk = tf.keras
    if isinstance(model3, keras.Sequential):
        if not model3.built or getattr(model3, "_functional", None) is None:
            raise UserError(f"{source}: a Sequential model without an Input cannot be rebuilt (not built)")
        model3 = model3._functional  # the functional graph Keras 3 keeps for a built Sequential
    if not isinstance(model3, keras.Model) or not hasattr(model3, "_operations") or \
            type(model3).__name__ not in ("Functional", "Model"):
        raise UserError(f"{source}: {type(model3).__name__} is a subclassed Keras 3 model; only Sequential and "
                        "functional models can be rebuilt in tf_keras")
    for layer in model3.operations:
        if type(layer).__name__ not in SUPPORTED or not type(layer).__module__.startswith("keras"):
            raise UserError(f"{source}: layer {layer.name!r} ({type(layer).__name__}) cannot be carried over to "
                            f"tf_keras (supported: {', '.join(SUPPORTED[1:7])}, ... in tfsparse.training.keras3.SUPPORTED)")
        calls = _graph_nodes(model3, layer)
        if len(calls) > 1:
            raise UserError(f"{source}: layer {layer.name!r} is shared ({len(calls)} calls); "
                            "shared layers cannot be rebuilt")

    tensors: dict[int, object] = {}  # id(Keras 3 KerasTensor) -> tf_keras tensor

    def mapped(x):
        if isinstance(x, keras.KerasTensor):
            return tensors[id(x)]
        if isinstance(x, (list, tuple)):
            return type(x)(mapped(v) for v in x)
        if isinstance(x, dict):
            return {k: mapped(v) for k, v in x.items()}
        return x

    for layer in model3.operations:
        node = _graph_nodes(model3, layer)[0]
        cls = type(layer).__name__
        if cls == "InputLayer":
            out = tk.Input(shape=tuple(layer.batch_shape[1:]), dtype=layer.dtype, name=layer.name)
            tensors[id(node.output_tensors[0])] = out
            continue
        args = mapped(list(node.arguments.args))
        kwargs = {k: mapped(v) for k, v in node.arguments.kwargs.items() if k not in ("training", "mask")}
        out = _call(tk, tf, layer, args, kwargs, source)
        outs = out if isinstance(out, (list, tuple)) else [out]
        for t3, t2 in zip(node.output_tensors, outs):
            tensors[id(t3)] = t2
    model = tk.Model([tensors[id(t)] for t in model3.inputs],
                     [tensors[id(t)] for t in model3.outputs] if len(model3.outputs) > 1
                     else tensors[id(model3.outputs[0])], name=model3.name)
    if check:
        compare(model3, model, source)
    return model


def _graph_nodes(model3, layer) -> list:
    """The calls of `layer` that belong to `model3`'s graph (Keras 3 keys them "<id>_ib-<i>")."""
    return [n for i, n in enumerate(layer._inbound_nodes) if f"{id(layer)}_ib-{i}" in model3._nodes]


def _call(tk, tf, layer, args, kwargs, source):
    """Builds the tf_keras counterpart of `layer`, calls it on `args`, copies the weights."""
    cls = type(layer).__name__
    config = _tf_keras_config(getattr(tk.layers, cls), layer.get_config())
    if cls == "Activation":
        name = config["activation"]
        if isinstance(name, dict):
            raise UserError(f"{source}: layer {layer.name!r} (Activation) uses a custom activation {name!r}")
        if name in ("hard_silu", "hard_swish"):
            return _hard_swish(tk, args[0], layer.name)
        if name == "hard_sigmoid":
            return _hard_sigmoid(tk, args[0], layer.name)
        config["activation"] = ACTIVATION_NAMES.get(name, name)
    for key in ("activation",):
        if isinstance(config.get(key), str) and config[key] in ("hard_silu", "hard_swish", "hard_sigmoid"):
            # A fused Keras 3-only activation: the layer linear, then the same ops as a separate step.
            act = config[key]
            config[key] = "linear"
            x = _build(tk, cls, config, layer, args, kwargs, source)
            return (_hard_sigmoid if act == "hard_sigmoid" else _hard_swish)(tk, x, f"{layer.name}_{act}")
        if isinstance(config.get(key), str):
            config[key] = ACTIVATION_NAMES.get(config[key], config[key])
    if cls == "Normalization":
        mean = np.asarray(layer.mean, dtype=np.float32)
        variance = np.asarray(layer.variance, dtype=np.float32)
        new = tk.layers.Normalization(axis=config.get("axis", -1), mean=mean.reshape(-1), variance=variance.reshape(-1),
                                      invert=bool(config.get("invert", False)), name=layer.name)
        return new(*args, **kwargs)
    return _build(tk, cls, config, layer, args, kwargs, source)


def _build(tk, cls, config, layer, args, kwargs, source):
    try:
        new = getattr(tk.layers, cls).from_config(config)
        out = new(*args, **kwargs)
        weights = layer.get_weights()
        if weights:
            new.set_weights(weights)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a config it rejects
        raise UserError(f"{source}: layer {layer.name!r} ({cls}) cannot be carried over to tf_keras: "
                        f"{_first_line(e)}") from None
    return out


def _hard_sigmoid(tk, x, name):
    """Keras 3's hard_sigmoid, relu6(x + 3) / 6, built as tf_keras' MobileNetV3 builds it.

    TF-MOT's XNNPACK policy accepts these ops (ReLU, add, multiply) and the TFLite converter
    fuses x * relu6(x + 3) / 6 into one HARD_SWISH op.
    """
    return tk.layers.ReLU(6.0, name=f"{name}_relu6")(x + 3.0) * (1.0 / 6.0)


def _hard_swish(tk, x, name):
    return tk.layers.Multiply(name=name)([x, _hard_sigmoid(tk, x, name)])


def _tf_keras_config(cls, config: dict) -> dict:
    """A Keras 3 layer config as the tf_keras class takes it (see the module doc)."""
    import inspect

    config = _strip_modules(dict(config))
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        config["dtype"] = dtype.get("config", {}).get("name", "float32")
    known = set(inspect.signature(cls.__init__).parameters) | {"name", "dtype", "trainable"}
    for base in cls.__mro__:
        if base.__name__ in ("Conv", "Pooling2D", "Pooling1D", "GlobalPooling2D", "GlobalPooling1D",
                             "SeparableConv", "_Merge", "Merge", "BaseDenseAttention", "_Pooling2D"):
            known |= set(inspect.signature(base.__init__).parameters)
    # Initializers only matter before training and the weights are copied; Keras 3 added
    # arguments to them (GlorotUniform's input_axes, ...) that tf_keras rejects.
    return {k: v for k, v in config.items() if k in known and not k.endswith("_initializer")}


def _strip_modules(obj):
    """Keras 3 serializes objects as {module, class_name, config, registered_name}; tf_keras
    reads {class_name, config}."""
    if isinstance(obj, dict):
        if "class_name" in obj and "config" in obj:
            return {"class_name": obj["class_name"], "config": _strip_modules(obj["config"])}
        return {k: _strip_modules(v) for k, v in obj.items() if k != "shared_object_id"}
    if isinstance(obj, list):
        return [_strip_modules(v) for v in obj]
    return obj


def sample_batch(model, n: int = 4, seed: int = 0):
    """A seeded batch for `model`'s inputs: ints below 10 for integer inputs, N(0, 1) floats."""
    rng = np.random.default_rng(seed)
    batch = []
    for t in model.inputs:
        shape = [n, *[d or 8 for d in t.shape[1:]]]
        dtype = str(getattr(t.dtype, "name", t.dtype))
        batch.append(rng.integers(0, 10, shape).astype(dtype) if "int" in dtype
                     else rng.standard_normal(shape).astype(np.float32))
    return batch


def compare(model3, model, source: str, tolerance: float = TOLERANCE) -> float:
    """Max abs difference of the two models' outputs on one seeded batch; UserError above `tolerance`."""
    batch = sample_batch(model)
    x = batch[0] if len(batch) == 1 else batch
    with warnings.catch_warnings():
        # keras.applications built on an `input_tensor` keep their input as a one-element list and
        # Keras 3 warns that a bare tensor "doesn't match the expected structure": same values.
        warnings.filterwarnings("ignore", message=r"The structure of `inputs` doesn't match")
        a = model3(x, training=False)
    b = model(x, training=False)
    a = a if isinstance(a, (list, tuple)) else [a]
    b = b if isinstance(b, (list, tuple)) else [b]
    diff = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b))
    if not diff <= tolerance:
        raise UserError(f"{source}: the tf_keras rebuild differs from the Keras 3 model by {diff:.3g} "
                        f"(max abs output difference on a batch, allowed {tolerance:g})")
    return diff
