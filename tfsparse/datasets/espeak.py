"""Offline speech synthesis with espeak-ng, through its C API (ctypes).

The library and its voice data come from PyPI's `espeakng-loader` (no system
install). espeak-ng synthesises at 22050 Hz into a callback; `say()` collects
the int16 samples of one utterance. Voices are `<accent>+<variant>`, e.g.
`en-us+f3` (American English, female variant 3): accents change the phonemes,
variants the formants, pitch range and breathiness.
"""

from __future__ import annotations

import ctypes

import numpy as np

from tfsparse.errors import UserError

SAMPLE_RATE = 22050
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER values
_POS_CHARACTER = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """One initialised espeak-ng (a process-wide singleton in the C library)."""

    _instance = None

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise UserError("speech synthesis needs espeakng-loader: pip install espeakng-loader") from None
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                          espeakng_loader.get_data_path().encode(), 0)
        if rate != SAMPLE_RATE:
            raise UserError(f"espeak-ng failed to initialise (returned {rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the C side holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "Espeak":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _collect(self, samples, n, events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(n,)).copy())
        return 0

    def say(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int = 50) -> np.ndarray:
        """int16 audio at 22050 Hz of `text` spoken by `voice` at `rate` words/min, pitch 0-99."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise UserError(f"espeak-ng has no voice {voice!r}")
        for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            self.lib.espeak_SetParameter(parameter, int(value), 0)
        self._chunks = []
        data = text.encode() + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def lowpass_resample(audio: np.ndarray, source_rate: int, target_rate: int, taps: int = 63) -> np.ndarray:
    """float resampling: windowed-sinc low-pass at 0.95 x the target Nyquist, then linear interpolation."""
    x = np.asarray(audio, np.float64)
    cutoff = 0.95 * (target_rate / 2) / source_rate  # cycles per source sample
    n = np.arange(taps) - (taps - 1) / 2
    kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    filtered = np.convolve(x, kernel / kernel.sum(), mode="same")
    t = np.arange(int(len(x) * target_rate / source_rate)) * (source_rate / target_rate)
    return np.interp(t, np.arange(len(x)), filtered)
