"""tfsparse: sparse Keras networks -> XNNPACK-ready TFLite flatbuffers.

Data flows one way: recipe -> train -> export -> inspect -> bench -> report. The public
API (`tfsparse.api`, re-exported here) drives each stage from Python:

    import tfsparse
    model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=32, num_classes=10)
    data = tfsparse.convert(model, "fp32")                  # .tflite bytes
    print(tfsparse.inspect(data).verdict)                   # "dense": nothing pruned yet

Names are loaded on first use, so `import tfsparse` stays cheap (no TensorFlow).

Keras: TF-MOT 0.8.1 supports only Keras 2, so `tf.keras` must resolve to `tf_keras`.
TensorFlow decides what `tf.keras` is when it is first used, from `TF_USE_LEGACY_KERAS`.
Importing tfsparse sets it to 1 unless the user set it already (an explicit `1`/`true`
is left alone; an explicit `0` is an error, as TF-MOT would fail later), and raises
`KerasVersionError` if TensorFlow was imported and `tf.keras` already resolved to Keras 3.
"""

import os
import sys

from tfsparse._version import __version__  # noqa: F401
from tfsparse.errors import KerasVersionError, TfsparseError

_LEGACY_ON = ("1", "true", "True")  # what TensorFlow's KerasLazyLoader accepts as "on"


def _keras_in_use(tf) -> str | None:
    """What an already imported TensorFlow resolves `tf.keras` to: "tf_keras", "keras_3",
    "keras_2", or None when it has not decided yet (tf.keras not used so far).

    TensorFlow 2.16+ holds a `KerasLazyLoader` that reads TF_USE_LEGACY_KERAS at the first
    attribute access; its state is read from its `__dict__` so that looking does not decide.
    """
    loader = vars(tf).get("keras")
    if loader is None:
        return None
    state = vars(loader)
    if "_tfll_initialized" in state:  # TensorFlow's KerasLazyLoader
        return state.get("_tfll_keras_version") if state["_tfll_initialized"] else None
    name = getattr(loader, "__name__", "")  # a plain module (another TensorFlow build)
    if name.startswith("tf_keras"):
        return "tf_keras"
    return "keras_3" if name.startswith("keras._tf_keras") else "keras_2"


def _use_legacy_keras() -> None:
    """Sets TF_USE_LEGACY_KERAS=1 unless set; raises KerasVersionError where it cannot work."""
    value = os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    tf = sys.modules.get("tensorflow")
    in_use = _keras_in_use(tf) if tf is not None else None
    if in_use == "keras_3":
        raise KerasVersionError(
            "TensorFlow was imported before tfsparse and tf.keras is Keras 3 (TF_USE_LEGACY_KERAS was "
            "not 1 when tf.keras was first used); TF-MOT 0.8.1 prunes only Keras 2 (tf_keras) models: "
            "import tfsparse before tensorflow, or set TF_USE_LEGACY_KERAS=1 before Python starts")
    if in_use is None and value not in _LEGACY_ON:
        raise KerasVersionError(
            f"TF_USE_LEGACY_KERAS={value!r}: tfsparse needs tf.keras to be Keras 2 (tf_keras), the only "
            "Keras TF-MOT 0.8.1 supports: unset it or set it to 1")


def _started_as_command() -> bool:
    """True while `tfsparse ...` or `python -m tfsparse...` starts (argv[0] is "-m" while runpy
    looks for the module), where an error must be one line, not an import traceback."""
    return sys.argv[:1] == ["-m"] or os.path.basename(sys.argv[0] if sys.argv else "") == "tfsparse"


try:
    _use_legacy_keras()
except KerasVersionError as e:
    if not _started_as_command():
        raise
    print(f"tfsparse: error: {e}", file=sys.stderr)
    sys.exit(2)
# TensorFlow's C++ log (oneDNN notices, "failed call to cuInit" on machines without
# a GPU) buries progress lines and one-line errors; Python exceptions still carry
# every real failure. TF_CPP_MIN_LOG_LEVEL=0 brings the log back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# `python -m tfsparse.train` and the other pre-package command names (tfsparse.commands).
from tfsparse.commands import install_module_aliases  # noqa: E402

install_module_aliases()

# The public API, loaded lazily from tfsparse.api (module-level __getattr__, PEP 562).
__all__ = ["TfsparseError", "KerasVersionError", "ConversionError",
           "load_recipe", "create_model", "list_models", "prune", "pruning_callbacks", "strip", "train",
           "convert", "export", "inspect", "twin", "bench", "android_bench", "report", "sparse_training_callback",
           "doctor", "load_model",
           "TrainResult", "Manifest", "InspectReport", "Finding", "BenchResults", "AndroidBenchResults",
           "ReportResult"]


def __getattr__(name: str):
    if name in __all__:
        from tfsparse import api

        return getattr(api, name)
    raise AttributeError(f"module 'tfsparse' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
