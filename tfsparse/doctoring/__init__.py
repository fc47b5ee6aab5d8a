"""`tfsparse doctor` (`tfsparse.doctor()`): make a Keras model XNNPACK-ready before training.

A package of its own because the doctor spans two stages: it rewrites Keras graphs (before
pruning, which needs TF-MOT's `PruneForLatencyOnXNNPack` to accept the model) and predicts the
outcome from a converted TFLite file with the XNNPACK rules port (`tfsparse.tflite.xnnpack`),
which belongs to neither `tfsparse.pruning` nor `tfsparse.tflite` alone. `record` (no
TensorFlow) is what the fixed `.keras` file carries for training and export.
Named `doctoring`, like the other stage packages (`training`, `exporting`), so that
`tfsparse.doctor` is always the API function, never this package.
"""
