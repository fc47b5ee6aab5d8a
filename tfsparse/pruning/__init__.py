"""Making a Keras model sparse: which layers, which schedule, which zero pattern.

Owns TF-MOT's wrappers as tfsparse uses them. `magnitude` holds gradual and one-shot magnitude
pruning (Zhu & Gupta 2017): schedules, the policies that pick the layers (XNNPACK's 1x1
convolutions, `all`, a regex, `exclude`), stripping and measured sparsity. `block` adds
output-channel blocks and m:n structure inside TF-MOT's pruning step (Elsen et al. 2019).
`sparse_training` is sparse from the first step: static, SET and RigL masks (ERK or uniform layer
sparsities) kept exact by a Keras callback (Evci et al. 2020).
Nothing here trains or converts: `tfsparse.training` runs the schedules, `tfsparse.exporting`
converts what comes out.
"""
