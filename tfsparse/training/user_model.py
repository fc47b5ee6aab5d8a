"""The user's own model as a training start: load any saved Keras model, fit it to the data.

`[model] from = "path"` in a recipe (or `tfsparse train --from path`) accepts:

- tf_keras files: `.keras`, `.h5` and SavedModel folders (`tf.keras.models.load_model`);
- Keras 3 `.keras` and `.h5` files (`import keras`, the default Keras of TensorFlow 2.16+): rebuilt as
  an equivalent tf_keras model with the same weights and checked on a batch
  (`tfsparse.training.keras3`), because TF-MOT prunes tf_keras models only;
- a file written by `tfsparse doctor --fix`: its record (`tfsparse.doctoring.record`) says which
  input preprocessing left the graph; the trainer composes it into the data's.

Transfer learning: when the data has another number of classes than the model's output,
`[model] replace_head = true` replaces the last Dense layer with a new one (global pooling
and everything before it are kept); `[train] head_epochs` then trains that head alone with
the backbone frozen before the dense phase (the usual Keras transfer-learning recipe:
https://keras.io/guides/transfer_learning/). Without `replace_head` a mismatch is an error.

    model, record = load_model("my_model.keras")
    model = replace_head(model, num_classes=10, source="my_model.keras")
"""

from __future__ import annotations

from pathlib import Path

from tfsparse.cli import UserError
from tfsparse.doctoring import record as doctor_record

HEAD_NAME = "new_head"


def load_model(path, what: str = "--from"):
    """(tf_keras model, doctor record or None) for a saved model; one-line UserError otherwise."""
    import tensorflow as tf

    from tfsparse.training import keras3

    path = Path(path)
    if not path.exists():
        raise UserError(f"{what}: no such model file or folder: {path}")
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        raise UserError(f"{what}: {path} is a folder without saved_model.pb (not a SavedModel)")
    if keras3.is_keras3_file(path):
        return keras3.load(path), doctor_record.read(path)
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad file
        raise UserError(f"{what}: cannot load {path}: {keras3._first_line(e)}") from None
    if not isinstance(model, tf.keras.Model) or not getattr(model, "inputs", None):
        raise UserError(f"{what}: {path} is not a Keras model with known inputs "
                        "(a SavedModel must be saved by Keras: model.save(folder))")
    return model, doctor_record.read(path)


def classes_of(model) -> int | None:
    """The model's number of output classes (last dimension of a single output), or None."""
    shape = model.output_shape
    if isinstance(shape, list) or len(shape) != 2:
        return None
    return shape[-1]


def check_classes(model, num_classes: int, replace: bool, source: str):
    """The model, with a new head if allowed and needed; UserError for a mismatch otherwise."""
    have = classes_of(model)
    if have is None or have == num_classes:
        return model
    if not replace:
        raise UserError(f"{source}: the model outputs {have} classes, the data has {num_classes}; set "
                        "[model] replace_head = true to train a new classification head")
    return replace_head(model, num_classes, source)


def replace_head(model, num_classes: int, source: str = "model"):
    """The model with its last Dense replaced by a new `Dense(num_classes)` named `new_head`.

    The new layer keeps the old one's activation (softmax for a classifier) and reads the
    same tensor (after global pooling), so everything before it, weights included, is kept.
    """
    import tensorflow as tf

    dense = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    if not dense or model.layers[-1] is not dense[-1]:
        last = model.layers[-1]
        raise UserError(f"{source}: cannot replace the head: the last layer {last.name!r} "
                        f"({type(last).__name__}) is not a Dense layer (run `tfsparse doctor --fix` first: "
                        "it rewrites convolution heads into GlobalAveragePooling2D + Dense)")
    old = dense[-1]
    activation = tf.keras.activations.serialize(old.activation)
    tf.keras.utils.set_random_seed(0)
    head = tf.keras.layers.Dense(num_classes, activation=activation, name=HEAD_NAME)(old.input)
    return tf.keras.Model(model.inputs, head, name=model.name)


def freeze_backbone(model, frozen: bool) -> None:
    """Makes every layer but the new head (non-)trainable."""
    for layer in model.layers:
        if layer.name != HEAD_NAME:
            layer.trainable = not frozen
