"""tfsparse: sparse Keras networks -> XNNPACK-ready TFLite flatbuffers.

Data flows one way: recipe -> train -> export -> bench -> report.

TF-MOT 0.8.1 supports only Keras 2, so `tf.keras` must resolve to `tf_keras`.
TensorFlow reads `TF_USE_LEGACY_KERAS` once, at its first import; this is the one
place in the package that sets it, and every module is imported through this
package, so it is always set before TensorFlow is.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ log (oneDNN notices, "failed call to cuInit" on machines without
# a GPU) buries progress lines and one-line errors; Python exceptions still carry
# every real failure. TF_CPP_MIN_LOG_LEVEL=0 brings the log back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
