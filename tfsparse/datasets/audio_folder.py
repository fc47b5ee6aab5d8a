"""`[data] name = "audio_folder"`: WAV files per class through the log-mel front end, streamed.

    path/yes/0001.wav, path/no/0002.wav, ...       (or train/, val/, test/ folders of class folders)

    [model]
    name = "ds_cnn"              # takes (num_frames, num_mel_bins, 1) = (49, 40, 1)

    [data]
    name = "audio_folder"
    path = "/data/keywords"
    validation_split = 0.1       # when there is no val/ folder
    test_split = 0.1             # when there is no test/ folder

Each clip is read with Python's `wave` module (PCM, 8/16/32-bit, any channel count: channels
are averaged), must be at `sample_rate` of `tfsparse.datasets.features.FRONT_END` (16 kHz;
resample other rates first, a clip at another rate is reported as unreadable rather than
silently resampled), is cut or zero-padded at the end to 1 s, and goes through the same
numpy log-mel front end as the built-in keyword set (`features.log_mel`), inside the tf.data
pipeline. The front end's parameters and the standardisation (mean and deviation of the
log-mels of up to 256 training clips) are stored in the files' metadata, as for
`speech_keywords`. Unreadable clips are counted, named and skipped as for `image_folder`.
"""

from __future__ import annotations

import wave

import numpy as np

from tfsparse.datasets import features
from tfsparse.datasets.splits import Splits
from tfsparse.datasets.image_folder import SPLIT_FOLDERS, folder_splits
from tfsparse.datasets.streamed import StreamedSplit, data_cache, unreadable_report

EXTENSIONS = (".wav",)
STATS_CLIPS = 256


def fetch() -> str:
    return "nothing to fetch: reads the user's folder (data.path)"


def read_wav(path: str, config: dict = features.FRONT_END) -> np.ndarray:
    """float32 mono audio in [-1, 1], exactly `clip_samples` long; ValueError with the reason."""
    with wave.open(path, "rb") as w:
        rate, width, channels, n = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()
        if rate != config["sample_rate"]:
            raise ValueError(f"sample rate {rate} Hz, the front end needs {config['sample_rate']} (resample it)")
        if width not in (1, 2, 4):
            raise ValueError(f"{8 * width}-bit samples (8, 16 or 32-bit PCM expected)")
        raw = w.readframes(min(n, config["clip_samples"]))
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    audio = np.frombuffer(raw, dtype).astype(np.float32)
    if width == 1:  # 8-bit WAV is unsigned
        audio = audio - 128.0
    audio = audio.reshape(-1, channels).mean(axis=1) / float(2 ** (8 * width - 1))
    if len(audio) == 0:
        raise ValueError("no samples")
    out = np.zeros(config["clip_samples"], np.float32)
    out[:len(audio)] = audio
    return out


def _check(path: str) -> str | None:
    try:
        read_wav(path)
        return None
    except (ValueError, wave.Error, EOFError, OSError) as e:
        return (str(e) or type(e).__name__).splitlines()[0][:200]


def log_mel_of(path) -> np.ndarray:
    path = path.decode() if isinstance(path, bytes) else str(path)
    return features.log_mel(read_wav(path))[..., None]


class AudioFolderSplit(StreamedSplit):
    element_dtype = np.float32
    element_shape = (features.num_frames(), features.FRONT_END["num_mel_bins"], 1)

    def settings(self) -> dict:
        return {"front_end": features.FRONT_END}

    def decode(self, key):
        import tensorflow as tf

        x = tf.numpy_function(log_mel_of, [key], tf.float32, stateful=False)
        x.set_shape(self.element_shape)
        return x


def load(data_config, model_args) -> Splits:
    labels, parts, bad, ignored, layout, checked = folder_splits(data_config, EXTENSIONS, _check, "WAV files")
    cache = data_cache(data_config.cache)
    buffer = data_config.shuffle_buffer or 1024
    split = {s: AudioFolderSplit(*parts[s], cache=cache, shuffle_buffer=buffer, name=s) for s in SPLIT_FOLDERS}
    # Standardised with the training clips' global mean and deviation, as speech_keywords is.
    sample = np.random.default_rng(0).permutation(len(split["train"]))[:STATS_CLIPS]
    mels = np.stack([log_mel_of(p) for p in split["train"].keys[np.sort(sample)]])
    mean, std = float(mels.mean()), float(mels.std()) or 1.0
    return Splits(
        name="audio_folder", labels=labels,
        x_train=split["train"], y_train=parts["train"][1], x_val=split["val"], y_val=parts["val"][1],
        x_test=split["test"], y_test=parts["test"][1],
        preprocessing={"kind": "log_mel", "layout": "frames x mel bins x 1", **features.FRONT_END,
                       "num_frames": features.num_frames(), "scale": 1 / std, "offset": -mean / std,
                       "formula": "input = log_mel * scale + offset",
                       "note": "the user's WAV clips, channels averaged, cut or zero-padded at the end to "
                               "clip_samples; features = log(mel power + log_offset), see "
                               "tfsparse/datasets/features.py"},
        data_report=unreadable_report("audio_folder", str(data_config.path), sorted(bad.items()), classes=labels,
                                      ignored_files=ignored, examples={s: int(len(parts[s][0])) for s in SPLIT_FOLDERS},
                                      layout=layout, checked_now=checked,
                                      normalisation_clips=int(len(sample))),
    )
