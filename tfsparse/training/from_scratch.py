"""The training phase of a sparse-from-scratch run (`[pruning] method = static | set | rigl`).

How the trainer's phases map: there is no dense phase. The run trains the zoo model sparse
from its first step for `dense_epochs + epochs` epochs (each capped by `--epochs`, as the two
phases of a gradual run are), so a gradual run and a sparse-from-scratch run of one recipe
train for the same number of epochs in total. It starts from `train.learning_rate` (the
network is untrained; `pruning_learning_rate` is for fine-tuning a trained one) with the same
cosine decay over the whole run. In `state.json` the dense phase is marked done with 0 epochs
and the run's epochs are counted as the `pruning` phase, so the pipeline, `metrics.json`
(`seconds_per_epoch.pruned`) and `--resume` read it as they read any run. `dense_score` is
null: there is no dense network. `dense.keras` holds the final sparse weights (stored dense),
so `tfsparse export` makes its baseline from the same weights, as it does for a bare model.

Resuming is exact: each epoch's checkpoint holds the model and optimizer (Adam's slots, step
count) and `checkpoints/sparse_state.e<N>.npz` holds the masks, the random generator's state
and the update history; the training batches come from one seeded stream that a resumed run
skips forward in, so epoch N sees the batches it would have seen uninterrupted. With
deterministic kernels (`TF_DETERMINISTIC_OPS=1`) and no dropout a killed and resumed run ends
with the same masks and weights, bit for bit (tested); otherwise TensorFlow's multi-threaded
float sums can differ in the last bit and SET/RigL's magnitude ranking may then differ after
the resume point, as two uninterrupted runs differ.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfsparse.pruning import magnitude as pruning
from tfsparse.pruning import sparse_training as st
from tfsparse.training.checkpoints import EpochCheckpoint, save_for_inference
from tfsparse.training.input_pipeline import batches, scaled
from tfsparse.training.progress import EpochProgress

keras = tf.keras
PHASE = "pruning"  # the run's epochs are counted where a gradual run counts its sparse ones


def resumable_batches(trainer, initial_epoch: int):
    """The training batches as one seeded, endless stream, skipped to `initial_epoch`.

    `Trainer.data` reshuffles per pass over a fresh dataset, so a resumed run would see epoch
    0's order again; here epoch N is always the stream's N-th pass.
    """
    s, t = trainer.splits, trainer.recipe.train
    train = batches(s.x_train, s.y_train, t.batch_size, s.preprocessing, shuffle=True, seed=t.seed)
    return train.repeat().skip(initial_epoch * trainer.steps_per_epoch())


def gradient_batch(trainer):
    """rng -> one training batch (RigL's dense gradient), drawn with the run's saved generator."""
    s, t = trainer.splits, trainer.recipe.train

    def draw(rng):
        idx = np.sort(rng.choice(len(s.x_train), size=min(t.batch_size, len(s.x_train)), replace=False))
        return tf.constant(scaled(s.x_train[idx], s.preprocessing)), tf.constant(s.y_train[idx])

    return draw


def sparse_phase(trainer, state):
    """Trains the recipe's model sparse from the first step; writes sparse.keras and dense.keras."""
    recipe, run = trainer.recipe, trainer.folder
    config, train = recipe.pruning, recipe.train
    if not state.finished("dense"):
        state.mark_finished("dense", dense_score=None, dense_extra={})
    if state.finished(PHASE):
        return
    epochs = trainer.epochs(train.dense_epochs) + trainer.epochs(train.epochs)
    steps = trainer.steps_per_epoch()
    n_full = trainer.splits.full_train_examples or len(trainer.splits.x_train)
    full_steps = (train.dense_epochs + train.epochs) * pruning.steps_per_epoch(n_full, train.batch_size)
    schedule = st.update_schedule(config, epochs * steps, full_steps)
    ckpt = trainer.ckpt_dir / f"{PHASE}.keras"
    done = state.epochs_done(PHASE)
    saved = st.state_path(trainer.ckpt_dir, done)
    # The data stream and anything else seeded draw from the same seeds in a resumed run.
    tf.keras.utils.set_random_seed(train.seed)
    with trainer.strategy.scope():
        if done > 0 and ckpt.exists() and saved.exists():
            model = keras.models.load_model(ckpt)
            masks, rng, history = st.load_state(saved)
        else:
            done = 0
            model = trainer.build_model()
            names = st.selected_layers(model, config)
            shapes = {n: tuple(pruning.prunable_kernel(model.get_layer(n)).shape) for n in names}
            distribution = st.setting(config, "distribution")
            targets = st.layer_sparsities(shapes, config.final_sparsity, distribution)
            rng = np.random.default_rng(train.seed)
            masks = st.random_masks(shapes, targets, rng)
            history = []
            trainer.compile(model, train.learning_rate, epochs * steps)
            state.data["epochs_done"][PHASE] = 0
            state.data["seconds"][PHASE] = []
            state.data["schedule"] = {"kind": config.method, "distribution": distribution,
                                      "update_every": schedule.update_every, "stop_step": schedule.stop_step,
                                      "drop_fraction": schedule.drop_fraction, "total_steps": epochs * steps,
                                      "update_steps": len(schedule.update_steps()),
                                      "layer_targets": {n: round(v, 6) for n, v in targets.items()}}
            state.data["pruned_layers"] = names
            state.save()
    print(f"[{config.method}] sparse from the first step: {len(masks)} layers, schedule "
          f"{ {k: v for k, v in state.data['schedule'].items() if k != 'layer_targets'} }", flush=True)
    callback = st.SparseTraining(config.method, masks, schedule, rng, pruning.prunable_kernel,
                                 gradient_batch=gradient_batch(trainer), checkpoints=trainer.ckpt_dir,
                                 log_dir=run.logs(PHASE) / "sparsity", history=history)
    if done < epochs:
        print(f"[{config.method}] epochs {done + 1}..{epochs} of {epochs}, {len(trainer.splits.x_train)} "
              f"examples, {steps} steps/epoch", flush=True)
        _, val = trainer.data()
        progress = [EpochProgress(config.method, epochs)] if trainer.verbose else []
        model.fit(resumable_batches(trainer, done), validation_data=val, epochs=epochs, initial_epoch=done,
                  steps_per_epoch=steps, verbose=0,
                  callbacks=[callback, keras.callbacks.TensorBoard(str(run.logs(PHASE))),
                             EpochCheckpoint(ckpt, state, PHASE), *progress])
    state.data["mask_updates"] = callback.history
    model.compile(loss=train.loss, metrics=[train.metric])
    save_for_inference(model, run.sparse_model)
    # No dense network exists: the export baseline is these weights stored dense (module docstring).
    save_for_inference(model, run.dense_model)
    state.mark_finished(PHASE, sparse_score=trainer.score(model), sparse_extra=trainer.extra_metrics(model))
