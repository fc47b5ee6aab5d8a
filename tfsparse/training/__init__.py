"""Training a recipe: the dense phase, then the pruning fine-tune, checkpointed per epoch.

`trainer` runs the two phases (resumable from `state.json`, kept by `run_state`), `progress`
prints one line per epoch, and `command` is `tfsparse train` / `python -m tfsparse.train`.
A run folder's files are named in `tfsparse.run_folder`.
"""
