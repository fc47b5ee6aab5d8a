"""The two training phases behind `python -m tfsparse.train`, checkpointed per epoch.

Phase 1 (dense): train the zoo model (or take the user's `--from` model).
Phase 2 (pruning): wrap the policy's layers with `prune_low_magnitude` and
fine-tune while the schedule raises sparsity (gradual), or prune once and
fine-tune at fixed masks (`--one-shot`). Then strip the wrappers.

Each epoch ends with an atomic checkpoint (model + optimizer + TF-MOT's
`pruning_step` variables) and an update of `state.json`, so a run killed at any
point resumes with `--resume`, losing at most the epoch in progress, and the
pruning schedule continues where it stopped instead of restarting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tfsparse import atomic, run_folder
from tfsparse.errors import UserError
from tfsparse.pruning import magnitude as pruning
from tfsparse.run_folder import RunFolder
from tfsparse.doctoring import record as doctor_record
from tfsparse.training import from_scratch, user_model, workers
from tfsparse.training.checkpoints import EpochCheckpoint, save_for_inference
from tfsparse.training.input_pipeline import batches, scaled
from tfsparse.training.progress import EpochProgress
from tfsparse.zoo import create_model

keras = tf.keras
# The train-split metric (generalisation gap) is measured on at most this many training examples.
TRAIN_EVAL_EXAMPLES = 10_000
EQUAL_PHASE = "dense_equal"  # the dense reference trained for dense_epochs + epochs (equal_epochs_dense)


class Trainer:
    def __init__(self, recipe, splits, run_dir: Path, strategy, epochs_cap: int | None = None, verbose: bool = True,
                 log=lambda line: None):
        self.recipe, self.splits, self.run_dir = recipe, splits, Path(run_dir)
        self.strategy, self.epochs_cap, self.verbose = strategy, epochs_cap, verbose
        self.log = log  # phase lines ("[dense] test accuracy ..."); the command passes print, the API a no-op
        self.folder = RunFolder(self.run_dir)  # not `self.run`: that would hide the method run()
        self.ckpt_dir = self.folder.checkpoints
        self.doctor_record, self._composed = None, False
        self.shard = workers.input_shard(strategy)  # (workers, this one's index) of a multi-worker run
        self.train_steps = self.val_steps = None  # fit's step counts when the input is distributed (feed)

    # ---- set-up -----------------------------------------------------------------
    def build_model(self):
        args = {"num_classes": self.splits.num_classes, **self.recipe.model.args}
        tf.keras.utils.set_random_seed(self.recipe.train.seed)
        return create_model(self.recipe.model.name, **args)

    def load_user_model(self, path: str):
        """The user's model (`--from` / `[model] from`; tfsparse.training.user_model), fitted to the data."""
        what = "--from" if path != self.recipe.model.from_path else "model.from"
        model, record = user_model.load_model(path, what)
        self.doctor_record = record
        if record and record.get("input_preprocessing") and not self._composed:
            # `tfsparse doctor --fix` moved Rescaling/Normalization out of the graph: feed it here.
            self.splits.preprocessing = doctor_record.compose(self.splits.preprocessing,
                                                              record["input_preprocessing"])
            self._composed = True
        expected = tuple(self.splits.x_train.shape[1:])
        if tuple(model.input_shape[1:]) != expected:
            raise UserError(f"{what}: {path} takes input {tuple(model.input_shape[1:])}, the data is {expected}")
        if self.splits.labels and self.recipe.train.loss == "sparse_categorical_crossentropy":
            model = user_model.check_classes(model, self.splits.num_classes, self.recipe.model.replace_head,
                                             f"{what} {path}")
        return model

    def save_model(self, model, path: Path):
        """`save_for_inference`, keeping the doctor's record so that export composes the same input."""
        save_for_inference(model, path)
        if self.doctor_record:
            doctor_record.add(path, self.doctor_record)

    def validate(self, from_model: str | None = None):
        """Every check that needs TensorFlow, before the run folder is written."""
        user_path = from_model or self.recipe.model.from_path
        with self.strategy.scope():
            model = self.load_user_model(user_path) if user_path else self.build_model()
        try:
            pruning.check_policy(model, self.recipe.pruning)
        except UserError as e:
            if not user_path or "XNNPACK" not in str(e):
                raise
            raise UserError(f"{e} (`tfsparse doctor {user_path} --fix FIXED.keras` rewrites it)") from None
        if len(self.splits.x_train) == 0:
            raise UserError("no training examples")
        if self.sharded(self.splits.x_train):
            workers.per_replica_batch(self.strategy, self.recipe.train.batch_size)

    def epochs(self, n: int) -> int:
        return min(n, self.epochs_cap) if self.epochs_cap else n

    def steps_per_epoch(self) -> int:
        return pruning.steps_per_epoch(len(self.splits.x_train), self.recipe.train.batch_size)

    def compile(self, model, learning_rate: float, total_steps: int):
        train = self.recipe.train
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, total_steps), alpha=0.05)
        if train.weight_decay:
            optimizer = keras.optimizers.AdamW(schedule, weight_decay=train.weight_decay)
        else:
            optimizer = keras.optimizers.Adam(schedule)
        model.compile(optimizer=optimizer, loss=train.loss, metrics=[train.metric])

    def sharded(self, x) -> bool:
        """True when each worker reads only its share of `x` (a multi-worker run on the user's files)."""
        return self.shard is not None and hasattr(x, "dataset")

    def feed(self, x, y, batch_size: int, train: bool = False):
        """(input, steps) for fit / evaluate: a tf.data pipeline and None, or in a multi-worker run
        on the user's files this worker's share as a distributed dataset with its step count
        (tfsparse.training.workers)."""
        s, seed = self.splits, self.recipe.train.seed
        if not self.sharded(x):
            return batches(x, y, batch_size, s.preprocessing, shuffle=train, seed=seed), None
        ds = workers.distribute(self.strategy, self.shard, lambda per_replica, shard: batches(
            x, y, per_replica, s.preprocessing, shuffle=train, seed=seed, shard=shard), batch_size, repeat=train)
        steps = self.steps_per_epoch() if train else workers.eval_steps(self.strategy, self.shard, len(x), batch_size)
        return ds, steps

    def data(self):
        t, s = self.recipe.train, self.splits
        train, self.train_steps = self.feed(s.x_train, s.y_train, t.batch_size, train=True)
        val, self.val_steps = self.feed(s.x_val, s.y_val, 256) if len(s.x_val) else (None, None)
        return train, val

    def fit_steps(self) -> dict:
        """`model.fit` step counts of the last `data()` (None: Keras counts a plain dataset itself)."""
        return {"steps_per_epoch": self.train_steps, "validation_steps": self.val_steps}

    def evaluate(self, model, x, y) -> dict:
        if model.distribute_strategy is not self.strategy:  # a model built outside the run's strategy
            ds, steps = batches(x, y, 256, self.splits.preprocessing), None
        else:
            ds, steps = self.feed(x, y, 256)
        return model.evaluate(ds, steps=steps, verbose=0, return_dict=True)

    def score(self, model) -> float:
        """The recipe's metric (accuracy by default) on the test split."""
        s = self.splits
        return float(self.evaluate(model, s.x_test, s.y_test)[self.recipe.train.metric])

    def train_score(self, model) -> float:
        """The same metric on (the first TRAIN_EVAL_EXAMPLES of) the training split, as evaluated
        (no dropout, no shuffling): with `score`, the train-test gap of `metrics.json["generalisation"]`."""
        s, n = self.splits, TRAIN_EVAL_EXAMPLES
        return float(self.evaluate(model, s.x_train[:n], s.y_train[:n])[self.recipe.train.metric])

    def extra_metrics(self, model) -> dict:
        if self.splits.extra_metrics is None:
            return {}
        def predict(x):
            return model.predict(scaled(x, self.splits.preprocessing), verbose=0, batch_size=256)

        predict.model = model  # for metrics of an inner layer (an autoencoder's code); a TFLite predict has none
        return self.splits.extra_metrics(predict)

    def fit(self, model, phase: str, epochs: int, state, callbacks):
        train, val = self.data()
        initial = state.epochs_done(phase)
        if initial < epochs:
            self.log(f"[{phase}] epochs {initial + 1}..{epochs} of {epochs}, "
                     f"{len(self.splits.x_train)} examples, {self.steps_per_epoch()} steps/epoch")
            ckpt = EpochCheckpoint(self.ckpt_dir / f"{phase}.keras", state, phase)
            # One line per epoch of our own (tfsparse.training.progress) instead of Keras' bar.
            progress = [EpochProgress(phase, epochs)] if self.verbose else []
            model.fit(train, validation_data=val, epochs=epochs, initial_epoch=initial,
                      callbacks=[*callbacks, ckpt, *progress], verbose=0, **self.fit_steps())

    # ---- phases -----------------------------------------------------------------
    def dense_phase(self, state, from_model: str | None):
        dense_path = self.folder.dense_model
        if state.finished("dense"):
            return
        # `--from` starts from a trained model (no dense phase); `[model] from` fine-tunes it.
        user_path = from_model or self.recipe.model.from_path
        epochs = 0 if from_model else self.epochs(self.recipe.train.dense_epochs)
        ckpt = self.ckpt_dir / run_folder.DENSE_MODEL
        with self.strategy.scope():
            if ckpt.exists():
                model = keras.models.load_model(ckpt)
                if user_path:
                    self.load_user_model(user_path)  # its record (input preprocessing) only
            else:
                model = self.load_user_model(user_path) if user_path else self.build_model()
                self.head_phase(model)
                # A --from model is compiled too: evaluation needs the loss and metric.
                self.compile(model, self.recipe.train.learning_rate, epochs * self.steps_per_epoch())
        tensorboard = keras.callbacks.TensorBoard(str(self.folder.logs("dense")))
        self.fit(model, "dense", epochs, state, [tensorboard])
        self.save_model(model, dense_path)
        score = self.score(model)
        self.log(f"[dense] test {self.recipe.train.metric} {score:.4f}")
        state.mark_finished("dense", dense_score=score, dense_train_score=self.train_score(model),
                            dense_extra=self.extra_metrics(model))

    def head_phase(self, model):
        """`[train] head_epochs` of a new head alone, backbone frozen (not checkpointed: short)."""
        epochs = self.epochs(self.recipe.train.head_epochs)
        if not epochs or user_model.HEAD_NAME not in [layer.name for layer in model.layers]:
            return
        user_model.freeze_backbone(model, True)
        self.compile(model, self.recipe.train.learning_rate, epochs * self.steps_per_epoch())
        train, val = self.data()
        self.log(f"[head] {epochs} epoch(s), backbone frozen")
        progress = [EpochProgress("head", epochs)] if self.verbose else []
        model.fit(train, validation_data=val, epochs=epochs, callbacks=progress, verbose=0, **self.fit_steps())
        user_model.freeze_backbone(model, False)

    def pruning_phase(self, state, one_shot: str | None):
        config = self.recipe.pruning
        if state.finished("pruning"):
            return
        epochs = self.epochs(self.recipe.train.finetune_epochs if one_shot else self.recipe.train.epochs)
        total_steps = epochs * self.steps_per_epoch()
        ckpt = self.ckpt_dir / "pruning.keras"
        with self.strategy.scope():
            if ckpt.exists():
                with tfmot.sparsity.keras.prune_scope():
                    model = keras.models.load_model(ckpt)
                schedule_info = state.data["schedule"]
            else:
                dense = keras.models.load_model(self.folder.dense_model, compile=False)
                if one_shot:
                    schedule, schedule_info = self.one_shot(dense, one_shot)
                else:
                    steps = pruning.schedule_steps(config, total_steps, self.full_pruning_steps())
                    schedule = pruning.make_schedule(config, steps)
                    schedule_info = {"kind": config.schedule, **steps.__dict__}
                model = pruning.apply_pruning(dense, config, schedule)
                self.compile(model, self.recipe.train.pruning_learning_rate, total_steps)
                state.data["schedule"] = schedule_info
                state.data["pruned_layers"] = pruning.pruned_layer_names(model)
                state.save()
        self.log(f"[pruning] schedule {schedule_info}")
        callbacks = [tfmot.sparsity.keras.UpdatePruningStep(),
                     tfmot.sparsity.keras.PruningSummaries(log_dir=str(self.folder.logs("pruning")))]
        self.fit(model, "pruning", epochs, state, callbacks)
        with self.strategy.scope():  # evaluated like the pruned model (a multi-worker run: each on its share)
            stripped = pruning.strip(model)
            stripped.compile(loss=self.recipe.train.loss, metrics=[self.recipe.train.metric])
        self.save_model(stripped, self.folder.sparse_model)
        state.mark_finished("pruning", sparse_score=self.score(stripped), sparse_train_score=self.train_score(stripped),
                            sparse_extra=self.extra_metrics(stripped))

    def equal_epochs_phase(self, state):
        """`[train] equal_epochs_dense`: the dense model trained `epochs` more epochs without pruning,
        with the pruning phase's optimizer and learning-rate schedule, so it has trained exactly as
        long as the sparse model: the fair reference for "sparse loses x points" (the pruning phase
        is also more training). Checkpointed per epoch like the other phases."""
        if state.finished(EQUAL_PHASE):
            return
        epochs = self.epochs(self.recipe.train.epochs)
        state.data["epochs_done"].setdefault(EQUAL_PHASE, 0)
        state.data["seconds"].setdefault(EQUAL_PHASE, [])
        ckpt = self.ckpt_dir / f"{EQUAL_PHASE}.keras"
        with self.strategy.scope():
            if ckpt.exists():
                model = keras.models.load_model(ckpt)
            else:
                model = keras.models.load_model(self.folder.dense_model, compile=False)
                self.compile(model, self.recipe.train.pruning_learning_rate, epochs * self.steps_per_epoch())
        self.fit(model, EQUAL_PHASE, epochs, state, [keras.callbacks.TensorBoard(str(self.folder.logs(EQUAL_PHASE)))])
        save_for_inference(model, self.run_dir / run_folder.DENSE_EQUAL_MODEL)
        state.mark_finished(EQUAL_PHASE, dense_equal_score=self.score(model),
                            dense_equal_train_score=self.train_score(model))

    def one_shot(self, dense, method: str):
        """Zeros `final_sparsity` of each policy-selected kernel at once (by magnitude or at random)."""
        config = self.recipe.pruning
        probe = pruning.apply_pruning(dense, config, pruning.one_shot_schedule(config))
        names = pruning.pruned_layer_names(probe)
        if method == "random":
            pruning.zero_randomly(dense, names, config.final_sparsity, self.recipe.train.seed)
        else:
            pruning.zero_smallest(dense, names, config.final_sparsity)
        # The fixed-mask schedule freezes exactly these zeros during fine-tuning.
        return pruning.one_shot_schedule(config), {"kind": f"one-shot {method}", "begin_step": 1, "end_step": 1,
                                                   "frequency": 1}

    def full_pruning_steps(self) -> int:
        """Steps of the pruning phase at the recipe's full size (for rescaling `frequency`)."""
        n_full = self.splits.full_train_examples or len(self.splits.x_train)
        return self.recipe.train.epochs * pruning.steps_per_epoch(n_full, self.recipe.train.batch_size)

    def split_sizes(self) -> dict[str, int]:
        s = self.splits
        return {"train": len(s.x_train), "val": len(s.x_val), "test": len(s.x_test)}

    def worker_shares(self) -> dict:
        """metrics.json `data.worker_shares`: examples of each split read by worker 1..n (streamed data only)."""
        if not self.sharded(self.splits.x_train):
            return {}
        return {"worker_shares": {split: workers.shares(n, self.shard) for split, n in self.split_sizes().items()}}

    def run(self, state, from_model: str | None = None, one_shot: str | None = None) -> dict:
        if self.worker_shares():
            self.log(workers.describe(self.shard, self.split_sizes()))
        if self.recipe.pruning.method != "gradual":
            # static / SET / RigL: sparse from the first step, no dense phase (training.from_scratch).
            from_scratch.sparse_phase(self, state)
        else:
            self.dense_phase(state, from_model)
            self.pruning_phase(state, one_shot)
            if self.recipe.train.equal_epochs_dense and not one_shot and not from_model:
                self.equal_epochs_phase(state)
        metrics = self.metrics(state)
        atomic.write_json(self.folder.metrics, metrics)
        return metrics

    def metrics(self, state) -> dict:
        """`metrics.json` (keys described in tfsparse/train.py), incl. `strategy` and `replicas`."""
        sparse = keras.models.load_model(self.folder.sparse_model, compile=False)
        names = state.data["pruned_layers"]
        seconds = state.data["seconds"]
        total = sum(int(np.prod(w.shape)) for w in sparse.weights)
        zeros = sum(int(np.sum(w.numpy() == 0)) for w in sparse.weights)
        return {
            "recipe": self.recipe.name,
            "model": self.recipe.model.name,
            "metric": self.recipe.train.metric,
            "dense_score": state.data["dense_score"],
            "sparse_score": state.data["sparse_score"],
            **({"dense_accuracy": state.data["dense_score"], "sparse_accuracy": state.data["sparse_score"]}
               if self.recipe.train.metric == "accuracy" else {}),
            "extra": {"dense": state.data["dense_extra"], "sparse": state.data["sparse_extra"]},
            **generalisation(state.data, self.recipe.train, len(self.splits.x_train)),
            "target_sparsity": self.recipe.pruning.final_sparsity,
            "overall_sparsity": pruning.overall_sparsity(sparse, names),
            "layer_sparsity": pruning.layer_sparsity(sparse, names),
            "parameters": total,
            "nonzero_parameters": total - zeros,
            "schedule": state.data["schedule"],
            # The dense and pruning phases (the equal-epochs reference is in "generalisation").
            "epochs": {k: v for k, v in state.data["epochs_done"].items() if k != EQUAL_PHASE},
            "train_examples": len(self.splits.x_train),
            # The user's data: classes, examples per split, unreadable files (counted and named).
            # ... and, in a multi-worker run, how many examples of each split every worker read.
            **({"data": {**self.splits.data_report, **self.worker_shares()}}
               if self.splits.data_report is not None else {}),
            # What the run really trained under, not what was asked for: a mirrored run that
            # silently fell back to one device shows here as 1 replica.
            "strategy": type(self.strategy).__name__.lstrip("_"),
            "replicas": int(self.strategy.num_replicas_in_sync),
            "seconds_per_epoch": {
                "dense": _mean(seconds["dense"]),
                "pruned": _mean(seconds["pruning"]),
            },
        }


def generalisation(data: dict, train, train_examples: int) -> dict:
    """`dense_train_score`, `sparse_train_score` and `generalisation` (train, test and gap per model,
    plus the equal-epochs dense reference when it was trained) for metrics.json."""
    def entry(prefix: str, epochs: int) -> dict | None:
        test, fit = data.get(f"{prefix}_score"), data.get(f"{prefix}_train_score")
        if test is None or fit is None:
            return None
        # The gap is train minus test for a score (accuracy), test minus train for an error (mse, mae).
        gap = fit - test if train.metric == "accuracy" else test - fit
        return {"train": fit, "test": test, "gap": round(gap, 6), "epochs": epochs}

    done = data.get("epochs_done", {})
    models = {"dense": entry("dense", done.get("dense", 0)),
              "sparse": entry("sparse", done.get("dense", 0) + done.get("pruning", 0)),
              "dense_equal_epochs": entry("dense_equal", done.get("dense", 0) + done.get(EQUAL_PHASE, 0))}
    out = {"dense_train_score": data.get("dense_train_score"), "sparse_train_score": data.get("sparse_train_score"),
           "generalisation": {"metric": train.metric,
                              "train_split": f"the first {min(train_examples, TRAIN_EVAL_EXAMPLES)} training "
                                             "examples, evaluated like the test split",
                              **{k: v for k, v in models.items() if v is not None}}}
    if models["dense_equal_epochs"] is not None:
        out["dense_equal_epochs_score"] = models["dense_equal_epochs"]["test"]
    return out


def _mean(values):
    return round(float(np.mean(values)), 3) if values else None
