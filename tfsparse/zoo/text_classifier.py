"""A bag-of-embeddings text classifier (fastText-like: Joulin et al., 2016, arXiv:1607.01759).

Token ids -> Embedding -> average over the sequence -> Dense(ReLU) -> softmax.
Almost all weights sit in the embedding table (vocab_size x embedding_dim), so
that is the layer worth pruning: TF-MOT prunes `Embedding.embeddings` by
magnitude. The converter would store the pruned table dense (GATHER is outside its
sparsity pass); the export stage re-encodes it sparse (tfsparse.exporting.sparse_lookup). Padding
(id 0) is averaged in like any word: a mask would not survive conversion as
simply, and the classifier learns that the padding vector carries nothing.
"""

from __future__ import annotations

import tensorflow as tf

from tfsparse.zoo.registry import register_model

layers = tf.keras.layers


@register_model
def text_classifier(vocab_size: int = 10000, sequence_length: int = 256, embedding_dim: int = 64,
                    hidden_units: int = 64, num_classes: int = 5, dropout: float = 0.3):
    """Embedding `embedding` -> GlobalAveragePooling1D -> Dense `hidden` -> Dense `logits` (softmax)."""
    if vocab_size < 3 or sequence_length < 1 or embedding_dim < 1 or hidden_units < 1:
        raise ValueError("vocab_size >= 3, sequence_length, embedding_dim and hidden_units >= 1 are required")
    inputs = tf.keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocab_size, embedding_dim, name="embedding")(inputs)
    x = layers.GlobalAveragePooling1D(name="average")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(hidden_units, activation="relu", name="hidden")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="text_classifier")
