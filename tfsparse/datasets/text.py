"""A word tokenizer an app can re-implement from its config in a few lines.

Deliberately plain (pure Python, no TensorFlow): lower-case the text, take the
matches of one regular expression as words, map each word to its vocabulary id
(unknown words -> `oov_id`), keep the first `sequence_length` ids and pad with
`pad_id`. The vocabulary is the `vocab_size - 2` most frequent training words,
ties broken alphabetically, so it is a pure function of the training texts.
`get_config()` is everything needed to reproduce `encode` exactly; it is stored
in the exported model's metadata.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

PATTERN = r"[a-z0-9]+(?:'[a-z]+)?"
PAD_ID, OOV_ID = 0, 1


@dataclass
class Tokenizer:
    vocabulary: list[str]  # index = token id; ids 0 and 1 are "<pad>" and "<oov>"
    sequence_length: int

    @classmethod
    def fit(cls, texts: list[str], vocab_size: int, sequence_length: int) -> "Tokenizer":
        if vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3 (padding, out-of-vocabulary and one word), got {vocab_size}")
        if sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
        counts = Counter(word for text in texts for word in words(text))
        ranked = sorted(counts, key=lambda w: (-counts[w], w))[:vocab_size - 2]
        return cls(["<pad>", "<oov>", *ranked], sequence_length)

    def __post_init__(self):
        self._ids = {word: i for i, word in enumerate(self.vocabulary)}

    def ids(self, text: str) -> list[int]:
        tokens = [self._ids.get(w, OOV_ID) for w in words(text)][:self.sequence_length]
        return tokens + [PAD_ID] * (self.sequence_length - len(tokens))

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), sequence_length) int32 token ids."""
        return np.array([self.ids(t) for t in texts], np.int32).reshape(len(texts), self.sequence_length)

    def get_config(self) -> dict:
        return {"tokenizer": {"lowercase": True, "word_regex": PATTERN, "pad_id": PAD_ID, "oov_id": OOV_ID,
                              "sequence_length": self.sequence_length, "truncation": "keep the first words",
                              "padding": "pad_id appended at the end"},
                "vocabulary": list(self.vocabulary)}

    @classmethod
    def from_config(cls, config: dict) -> "Tokenizer":
        return cls(list(config["vocabulary"]), int(config["tokenizer"]["sequence_length"]))


def words(text: str) -> list[str]:
    return re.findall(PATTERN, text.lower())
