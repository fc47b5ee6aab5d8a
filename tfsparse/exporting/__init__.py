"""Keras -> shippable `.tflite` files: converted, checked to run, measured, listed in a manifest.

`converter.convert` is the one Keras -> TFLite conversion every caller uses (fp32 / fp16 / int8,
`Optimize.EXPERIMENTAL_SPARSITY`); `sparse_lookup` stores pruned embedding tables sparse (the
converter leaves them dense); `exporter` writes `export/<name>/` and `manifest` defines what its
`manifest.json` holds. Reading a `.tflite` back belongs to `tfsparse.tflite`.
"""
