"""Synthetic spoken keywords (espeak-ng) in the shape of Speech Commands: 1 s at 16 kHz, 12 classes.

No real keyword data set ships offline, so this one is synthesised - keep that
visible in every report. Classes follow Warden's Speech Commands (2018,
arXiv:1804.03209) as used by "Hello Edge" (Zhang et al., 2017, arXiv:1711.07128):
`silence`, `unknown` (20 other words) and 10 keywords.

Speakers are espeak-ng voices `<accent>+<variant>`: 6 English accents x 30 voice
variants (formant sets, breathy, croaky, Klatt synthesiser). The split is by
variant - 20 train, 5 validation, 5 test, fixed by `SPLIT_SEED` - so test voices
are never heard in training, with any accent. Each speaker says every keyword
twice and 4 unknown words, each at a random rate (110-230 words/min), pitch and
pitch range.

Synthesis (~4300 clips, about a minute on one core) runs once, lazily on the
first `load()` with a progress line, and is cached as int16 16 kHz audio under
`~/.cache/tfsparse/speech_keywords/`. `fetch()` only checks that espeak-ng loads,
so `python -m tfsparse.datasets fetch` stays fast. Augmentation happens at load,
seeded per clip (so the splits are fixed): a random gain, a random placement in
the 1 s window (time shift), and white, pink or brown noise at 5-30 dB SNR;
`silence` clips are noise alone. The model input is the log-mel front end of
`tfsparse.datasets.features` (its exact parameters are stored in `Splits.preprocessing`).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from tfsparse import atomic
from tfsparse.datasets import features
from tfsparse.datasets.splits import Splits
from tfsparse.errors import UserError
from tfsparse.paths import cache_dir

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
UNKNOWN_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "bed", "bird", "cat", "dog", "happy", "house", "tree", "wow", "learn", "follow"]
LABELS = ["silence", "unknown", *KEYWORDS]
ACCENTS = ["en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "klatt", "klatt2",
            "klatt3", "klatt4", "whisper", "whisperf", "adam", "anika", "benjamin", "caleb", "david", "edward",
            "linda", "steph", "zac", "Annie", "Andy"]
SPLIT_SEED = 1804  # fixes which variants are train / validation / test
SYNTH_SEED = 3209  # fixes every utterance's rate and pitch
VAL_VARIANTS, TEST_VARIANTS = 5, 5
KEYWORD_REPEATS, UNKNOWN_PER_SPEAKER = 2, 4
SAMPLE_RATE = features.FRONT_END["sample_rate"]
CACHE_VERSION = 1  # bump when the synthesis changes


def cache_file():
    return cache_dir("speech_keywords", f"clips-v{CACHE_VERSION}.npz")


def fetch(verbose: bool = True) -> str:
    """Checks that espeak-ng loads; the clips are synthesised on first load (about a minute)."""
    if cache_file().is_file():
        return str(cache_file())
    from tfsparse.datasets.espeak import Espeak

    Espeak.get()
    return "espeak-ng ready; clips are synthesised and cached on first load"


def variant_split() -> dict[str, str]:
    """variant -> "train" | "val" | "test", fixed by SPLIT_SEED."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(VARIANTS))
    split = {}
    for rank, i in enumerate(order):
        split[VARIANTS[i]] = "test" if rank < TEST_VARIANTS else "val" if rank < TEST_VARIANTS + VAL_VARIANTS else "train"
    return split


def utterances() -> list[dict]:
    """Every clip to synthesise: word, label, voice and prosody (deterministic)."""
    rng = np.random.default_rng(SYNTH_SEED)
    items = []
    for variant in VARIANTS:
        for accent in ACCENTS:
            words = [w for w in KEYWORDS for _ in range(KEYWORD_REPEATS)]
            words += list(rng.choice(UNKNOWN_WORDS, UNKNOWN_PER_SPEAKER, replace=False))
            for word in words:
                items.append({"word": str(word), "label": LABELS.index(word) if word in KEYWORDS else 1,
                              "variant": variant, "accent": accent, "rate": int(rng.integers(110, 231)),
                              "pitch": int(rng.integers(20, 81)), "range": int(rng.integers(20, 81))})
    return items


def _trim(audio: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Drops espeak's leading/trailing silence (samples below `threshold` of the peak), keeps <= 1 s."""
    loud = np.flatnonzero(np.abs(audio) > threshold * max(1e-9, np.abs(audio).max()))
    if len(loud) == 0:
        return audio[:0]
    return audio[loud[0]:loud[-1] + 1][:SAMPLE_RATE]


def synthesise() -> dict[str, np.ndarray]:
    """Synthesises every utterance, resampled to 16 kHz and trimmed; caches the result."""
    from tfsparse.datasets.espeak import SAMPLE_RATE as ESPEAK_RATE
    from tfsparse.datasets.espeak import Espeak, lowpass_resample

    items = utterances()
    engine = Espeak.get()
    clips = []
    print(f"speech_keywords: synthesising {len(items)} clips with espeak-ng (once, about a minute) "
          f"-> {cache_file()}", flush=True)
    for k, item in enumerate(items):
        raw = engine.say(item["word"], f"{item['accent']}+{item['variant']}", item["rate"], item["pitch"],
                         item["range"])
        audio = _trim(lowpass_resample(raw / 32768.0, ESPEAK_RATE, SAMPLE_RATE))
        if len(audio) < SAMPLE_RATE // 10:
            raise UserError(f"espeak-ng produced no speech for {item}")
        clips.append(np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))
        if (k + 1) % 1000 == 0:
            print(f"speech_keywords: {k + 1}/{len(items)} clips", flush=True)
    lengths = np.array([len(c) for c in clips])
    data = {"audio": np.concatenate(clips), "offsets": np.concatenate([[0], np.cumsum(lengths)]),
            **{key: np.array([item[key] for item in items]) for key in items[0]}}
    with atomic.atomic_path(cache_file()) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **data)
    return data


def clips() -> dict[str, np.ndarray]:
    if not cache_file().is_file():
        return synthesise()
    with np.load(cache_file()) as data:
        return {key: data[key] for key in data.files}


def _noise(rng, n: int) -> np.ndarray:
    """White, pink (1/f) or brown (1/f^2) noise, unit RMS."""
    color = rng.integers(3)
    size = 1 << (n - 1).bit_length()  # a power of two: numpy's FFT is several times faster
    spectrum = np.fft.rfft(rng.standard_normal(size))
    f = np.maximum(np.arange(len(spectrum)), 1.0)
    spectrum /= f ** (color / 2)  # color 0: white, 1: pink, 2: brown
    noise = np.fft.irfft(spectrum, size)[:n]
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def augment(speech: np.ndarray | None, rng) -> np.ndarray:
    """1 s float clip: `speech` at a random gain and position plus noise at 5-30 dB SNR; None = silence."""
    out = np.zeros(SAMPLE_RATE)
    if speech is None:
        return _noise(rng, SAMPLE_RATE) * 10 ** rng.uniform(-4, -1.5)
    speech = speech.astype(np.float64) / 32768.0 * rng.uniform(0.3, 1.0)
    start = rng.integers(0, SAMPLE_RATE - len(speech) + 1)  # time shift: anywhere in the window
    out[start:start + len(speech)] = speech
    rms = np.sqrt(np.mean(speech ** 2))
    return out + _noise(rng, SAMPLE_RATE) * rms / 10 ** (rng.uniform(5, 30) / 20)


def features_file():
    """The augmented log-mel splits, cached: the name changes with the front end or the synthesis."""
    key = hashlib.sha256(json.dumps([features.FRONT_END, CACHE_VERSION], sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir("speech_keywords", f"features-{key}.npz")


def build_features() -> dict[str, np.ndarray]:
    """Augments every clip (seeded per clip) and computes its log-mel features, per split."""
    data = clips()
    split_of = variant_split()
    parts = {name: ([], []) for name in ("train", "val", "test")}
    for i in range(len(data["word"])):
        rng = np.random.default_rng([SYNTH_SEED, i])
        clip = data["audio"][data["offsets"][i]:data["offsets"][i + 1]]
        xs, ys = parts[split_of[str(data["variant"][i])]]
        xs.append(augment(clip, rng))
        ys.append(int(data["label"][i]))
    out = {}
    for s, (name, (xs, ys)) in enumerate(parts.items()):
        # As many silence clips as one keyword has, per split.
        for j in range(ys.count(LABELS.index(KEYWORDS[0]))):
            xs.append(augment(None, np.random.default_rng([SYNTH_SEED, s, j])))
            ys.append(0)
        order = np.random.default_rng([SPLIT_SEED, s]).permutation(len(ys))  # mixed: trimming keeps every class
        out[f"x_{name}"] = features.log_mel(np.array(xs, np.float32)[order])[..., None]
        out[f"y_{name}"] = np.array(ys, np.int32)[order]
    with atomic.atomic_path(features_file()) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **out)
    return out


def load(data_config, model_args) -> Splits:
    """log-mel features (N, 49, 40, 1) float32 and labels; splits by voice variant.

    `data.validation_examples` is not used: the validation split is its own voices.
    """
    if features_file().is_file():
        with np.load(features_file()) as cached:
            out = {key: cached[key] for key in cached.files}
    else:
        out = build_features()
    # Standardised with the training split's global mean and deviation (fixed by the data): raw
    # log-mels span about -14..9, which leaves batch norm's moving statistics lagging for epochs.
    mean, std = float(out["x_train"].mean()), float(out["x_train"].std())
    return Splits(
        name="speech_keywords", labels=LABELS,
        x_train=out["x_train"], y_train=out["y_train"], x_val=out["x_val"], y_val=out["y_val"],
        x_test=out["x_test"], y_test=out["y_test"],
        preprocessing={"kind": "log_mel", "layout": "frames x mel bins x 1", **features.FRONT_END,
                       "num_frames": features.num_frames(), "scale": 1 / std, "offset": -mean / std,
                       "formula": "input = log_mel * scale + offset",
                       "note": "SYNTHETIC speech (espeak-ng voices); features = log(mel power + log_offset), "
                               "see tfsparse/features.py"},
    )
