"""The log-mel front end for 1 s of 16 kHz speech, in plain numpy, defined by one config.

Training computes the features with `log_mel(audio, FRONT_END)`; the exported
model takes features, not audio, and stores `FRONT_END` in its metadata, so an
app reproduces the exact input with any DSP library: for each frame of
`frame_length` samples every `hop_length` (no padding; 1 + (16000 - 480) // 320
= 49 frames), multiply by a periodic Hann window, take the power spectrum of an
`fft_length`-point real FFT, apply `num_mel_bins` triangular HTK-mel filters
between `lower_hz` and `upper_hz` (weights unnormalised, as
`tf.signal.linear_to_mel_weight_matrix`), then `log(mel + log_offset)`.
Frame sizes follow "Hello Edge" (Zhang et al., 2017, arXiv:1711.07128), which
uses 40 ms frames with a 20 ms stride; 30 ms frames keep a 512-point FFT.
"""

from __future__ import annotations

import numpy as np

FRONT_END = {
    "sample_rate": 16000, "clip_samples": 16000, "frame_length": 480, "hop_length": 320, "fft_length": 512,
    "window": "hann (periodic)", "num_mel_bins": 40, "lower_hz": 20.0, "upper_hz": 7600.0,
    "mel_scale": "htk: 2595 * log10(1 + hz / 700)", "log_offset": 1e-6,
    "audio_scale": "int16 samples / 32768",
}


def num_frames(config: dict = FRONT_END) -> int:
    return 1 + (config["clip_samples"] - config["frame_length"]) // config["hop_length"]


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_matrix(config: dict = FRONT_END) -> np.ndarray:
    """(fft_length // 2 + 1, num_mel_bins) triangular filters on the HTK mel scale."""
    n_bins = config["fft_length"] // 2 + 1
    bin_mel = _hz_to_mel(np.linspace(0, config["sample_rate"] / 2, n_bins))
    edges = np.linspace(_hz_to_mel(config["lower_hz"]), _hz_to_mel(config["upper_hz"]), config["num_mel_bins"] + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower) / (center - lower)
    falling = (upper - bin_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0] = 0.0  # the DC bin carries no speech
    return weights.astype(np.float32)


def log_mel(audio: np.ndarray, config: dict = FRONT_END) -> np.ndarray:
    """float audio in [-1, 1], shape (..., clip_samples) -> (..., num_frames, num_mel_bins) float32."""
    audio = np.asarray(audio, np.float32)
    n, hop, frame = num_frames(config), config["hop_length"], config["frame_length"]
    index = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    frames = audio[..., index]  # (..., n, frame)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, n=config["fft_length"])) ** 2
    return np.log(power.astype(np.float32) @ mel_matrix(config) + config["log_offset"]).astype(np.float32)
