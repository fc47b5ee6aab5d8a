"""Training a recipe: the dense phase, then the pruning fine-tune, checkpointed per epoch.

`trainer` runs the two phases (resumable from `state.json`, kept by `run_state`), `progress`
prints one line per epoch, and `command` is `tfsparse train` / `python -m tfsparse.train`.
`from_scratch` is the single sparse phase of a static/SET/RigL run (no dense phase).
`input_pipeline` is what Keras is fed (shared with the exporter's checks) and `checkpoints`
saves the per-epoch checkpoints `--resume` reads and the inference copies export reads.
A run folder's files are named in `tfsparse.run_folder`.
"""
