"""Single log-mel frames of the synthetic keyword clips, for the sparse autoencoder (input = target).

Every 40-bin frame of every clip of `speech_keywords` (same voice split, same
front end), standardised with the training split's mean and deviation and
stored that way: the target of an autoencoder is its input, so the trainer must
not rescale one without the other (hence no `scale` key in `preprocessing`; the
standardisation is documented there as `mean`/`std` for the app).

`extra_metrics` reports what the issue asks of a sparse code, on the test voices:
reconstruction MSE, the fraction of code activations that are exactly zero (and
below 0.01), and how well a small classifier on the codes recognises the keywords:
softmax regression on each clip's codes mean-pooled over `SEGMENTS` time segments,
trained on the training clips, next to the same classifier on the log-mel frames
themselves as the reference.
"""

from __future__ import annotations

import numpy as np

from tfsparse.datasets import speech_keywords
from tfsparse.datasets.splits import Splits

SEGMENTS = 7  # 49 frames -> 7 segments of 7 frames


def fetch(verbose: bool = True) -> str:
    return speech_keywords.fetch(verbose)


def segment_pool(frames: np.ndarray) -> np.ndarray:
    """(clips, frames, dim) -> (clips, SEGMENTS * dim): means over consecutive time segments."""
    clips, n, dim = frames.shape
    usable = n // SEGMENTS * SEGMENTS
    return frames[:, :usable].reshape(clips, SEGMENTS, usable // SEGMENTS, dim).mean(axis=2).reshape(clips, -1)


def softmax_regression_accuracy(x_train, y_train, x_test, y_test, classes: int, steps: int = 300) -> float:
    """Test accuracy of multinomial logistic regression (full-batch gradient descent, L2 1e-3)."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    w, b = np.zeros((x_train.shape[1], classes)), np.zeros(classes)
    onehot = np.eye(classes)[y_train]
    for _ in range(steps):
        logits = x_train @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot) / len(x_train)
        w -= 0.5 * (x_train.T @ grad + 1e-3 * w)
        b -= 0.5 * grad.sum(axis=0)
    return float(np.mean(np.argmax(x_test @ w + b, axis=1) == y_test))


def load(data_config, model_args) -> Splits:
    clips = speech_keywords.load(data_config, model_args)
    mean, std = -clips.preprocessing["offset"] / clips.preprocessing["scale"], 1 / clips.preprocessing["scale"]

    def standardised(x):  # (clips, 49, 40, 1) -> (clips, 49, 40)
        return ((x[..., 0] - mean) / std).astype(np.float32)

    train, val, test = standardised(clips.x_train), standardised(clips.x_val), standardised(clips.x_test)
    frames = {name: x.reshape(-1, x.shape[-1]) for name, x in (("train", train), ("val", val), ("test", test))}
    classes = len(clips.labels)

    def extra_metrics(predict) -> dict:
        reconstruction = np.asarray(predict(frames["test"]))
        result = {"reconstruction_mse": float(np.mean((reconstruction - frames["test"]) ** 2)),
                  "logmel_classifier_accuracy": softmax_regression_accuracy(
                      segment_pool(train), clips.y_train, segment_pool(test), clips.y_test, classes),
                  "classifier": f"softmax regression on codes mean-pooled over {SEGMENTS} time segments"}
        model = getattr(predict, "model", None)  # the Keras model at train time (a TFLite predict has none)
        if model is not None:
            from tfsparse.zoo.autoencoder import encoder

            extract = encoder(model)
            codes = {name: extract.predict(frames[name], batch_size=4096, verbose=0).reshape(*x.shape[:2], -1)
                     for name, x in (("train", train), ("test", test))}
            result.update({
                "code_zero_fraction": float(np.mean(codes["test"] == 0)),
                "code_below_0.01_fraction": float(np.mean(np.abs(codes["test"]) < 0.01)),
                "code_classifier_accuracy": softmax_regression_accuracy(
                    segment_pool(codes["train"]), clips.y_train, segment_pool(codes["test"]), clips.y_test, classes),
            })
        return result

    return Splits(
        name="speech_frames", labels=[],
        x_train=frames["train"], y_train=frames["train"], x_val=frames["val"], y_val=frames["val"],
        x_test=frames["test"], y_test=frames["test"],
        preprocessing={**{k: v for k, v in clips.preprocessing.items() if k not in ("scale", "offset", "formula")},
                       "kind": "log_mel_frame", "layout": "one frame of num_mel_bins", "mean": mean, "std": std,
                       "formula": "input = (log_mel - mean) / std, one 40-bin frame at a time"},
        extra_metrics=extra_metrics,
    )
