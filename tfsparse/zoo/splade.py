"""A SPLADE-style sparse retrieval encoder and its dense-embedding twin (same trunk, same size).

SPLADE (Formal, Piwowarski & Clinchant, SIGIR 2021, "SPLADE: Sparse Lexical and Expansion
Model for First Stage Ranking", arXiv:2107.05720; v2: arXiv:2109.10086) maps a text to a
vocabulary-sized vector of term weights

    w_j = pool_t log(1 + ReLU(logit_tj))        (pool = max in SPLADE v2, sum in v1)

where `logit_tj` is token t's score for vocabulary term j (BERT's MLM head there; here a
Dense over a small trunk). ReLU makes most weights exactly zero, log(1 + .) damps large
ones; a query and a document are scored by the dot product of their vectors, which an app
computes over an inverted index (only the query's non-zero terms are looked up).

Training (`RetrievalEncoder.train_step`): in-batch negatives — each query's own document is
the positive, the other documents of the batch the negatives, softmax cross-entropy over the
batch's (queries x documents) score matrix — plus the FLOPS regulariser (Paria et al., ICLR
2020, "Minimizing FLOPs to Learn Efficient Sparse Representations", arXiv:2004.05665):
`sum_j (mean_i w_ij)^2` over the batch, weighted separately for queries and documents
(`flops_query`, `flops_document`; ramped up quadratically over the first `flops_warmup`
steps of each training phase, as SPLADE does), which pushes towards terms that are rarely non-zero, i.e.
short posting lists.

Trunk (shared by both heads, no pretrained language model — nothing may download):
token ids -> Embedding `embedding` -> Conv1D `context` (3-word window, ReLU) -> Dense
`term_head` (one logit per vocabulary term and token). `head="dense"` is the baseline of the
same size: the same layers, `term_head` of `dense_dim` (default: the vocabulary size, so the
same parameter count) without ReLU/log, masked mean pooling and L2 normalisation; scored by
cosine similarity (scaled by 1/temperature in the loss) and trained with the same in-batch
loss, no FLOPS term.

The input length is open (`None`): queries (titles) and documents (article bodies) go
through the same weights at their own lengths; the export fixes each file's length
(`<name>.sparse.*`: the query length; `<name>.document.sparse.*`: the document length).

    >>> import numpy as np, tfsparse
    >>> m = tfsparse.create_model("splade_encoder", vocab_size=50, embedding_dim=8)
    >>> m.compile("adam")
    >>> q = np.random.randint(2, 50, (4, 5)); d = np.random.randint(2, 50, (4, 20))
    >>> _ = m.fit(q, d, batch_size=4, verbose=0)     # (queries, their documents)
    >>> m.predict(q, verbose=0).shape
    (4, 50)
"""

from __future__ import annotations

import tensorflow as tf

from tfsparse.zoo.registry import register_model

keras = tf.keras
layers = keras.layers
HEAD_LAYER = "term_weights"
HEADS = ("sparse", "dense")
POOLINGS = ("max", "sum")
LOSS = "in_batch_softmax"  # the one `[train] loss` this model trains with (its own train_step)
METRIC = "mrr_at_10"


@keras.utils.register_keras_serializable("tfsparse")
class TermWeights(layers.Layer):
    """(token logits, token ids) -> one vector per text; padding (id `pad_id`) is masked out.

    `kind="sparse"`: pool_t log(1 + ReLU(logit)); `kind="dense"`: masked mean, L2-normalised.
    The retrieval loss settings live here too (not on the model) because TF-MOT and
    `save_for_inference` rebuild the model with `clone_model`, which keeps layer configs
    but not attributes of the model object.
    """

    def __init__(self, kind: str = "sparse", pooling: str = "max", pad_id: int = 0, flops_query: float = 0.0,
                 flops_document: float = 0.0, temperature: float = 1.0, flops_warmup: int = 0, **kwargs):
        super().__init__(**kwargs)
        if kind not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {kind!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        for name, value in (("flops_query", flops_query), ("flops_document", flops_document)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        if not isinstance(flops_warmup, int) or flops_warmup < 0:
            raise ValueError(f"flops_warmup must be an integer >= 0 (steps), got {flops_warmup!r}")
        self.kind, self.pooling, self.pad_id, self.flops_warmup = kind, pooling, int(pad_id), flops_warmup
        self.flops_query, self.flops_document, self.temperature = float(flops_query), float(flops_document), float(temperature)

    def call(self, inputs):
        logits, ids = inputs
        mask = tf.cast(tf.not_equal(ids, self.pad_id), logits.dtype)[..., None]
        if self.kind == "dense":
            mean = tf.reduce_sum(logits * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
            return tf.math.l2_normalize(mean, axis=-1)
        # log(1 + x) as LOG(ADD): TFLite has no LOG1P kernel; x >= 0 here, so no precision issue.
        weights = tf.math.log(1.0 + tf.nn.relu(logits)) * mask
        return tf.reduce_max(weights, axis=1) if self.pooling == "max" else tf.reduce_sum(weights, axis=1)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "pooling": self.pooling, "pad_id": self.pad_id,
                "flops_query": self.flops_query, "flops_document": self.flops_document,
                "temperature": self.temperature, "flops_warmup": self.flops_warmup}


def flops_regulariser(vectors):
    """Paria et al. 2020: sum over terms of the squared mean activation over the batch."""
    return tf.reduce_sum(tf.square(tf.reduce_mean(tf.abs(vectors), axis=0)))


@keras.utils.register_keras_serializable("tfsparse")
class RetrievalEncoder(keras.Model):
    """A functional text encoder (ids -> vector) that trains on (query ids, document ids) pairs.

    `fit(queries, documents)`: in-batch negatives + FLOPS (see the module docstring). Logs
    `loss`, `ranking_loss`, `flops`, `mrr_at_10` (in-batch: rank of the own document among the
    batch's documents, a training signal, not the test metric) and, for the sparse head,
    `query_nonzeros` / `document_nonzeros` (mean non-zero terms per vector in the batch).
    """

    @property
    def head(self) -> TermWeights:
        return self.get_layer(HEAD_LAYER)

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        # The loss is this model's own (train_step); accepted by name so a recipe says what it trains.
        if loss not in (None, LOSS):
            raise ValueError(f"a retrieval encoder trains with loss {LOSS!r} (its own train_step), got {loss!r}")
        if metrics not in (None, [], [METRIC], [None]):
            raise ValueError(f"a retrieval encoder reports metric {METRIC!r}, got {metrics!r}")
        super().compile(optimizer=optimizer, **kwargs)
        names = ["loss", "ranking_loss", "flops", METRIC]
        if self.head.kind == "sparse":
            names += ["query_nonzeros", "document_nonzeros"]
        # Set past Keras' attribute tracking: tracked metrics would add their variables to the
        # model's weights, and `get_weights`/`set_weights` between a model and its clone break.
        object.__setattr__(self, "_trackers", {name: keras.metrics.Mean(name=name) for name in names})

    @property
    def metrics(self):
        return list(getattr(self, "_trackers", {}).values())

    def _step(self, data, training: bool):
        queries, documents = data[0], data[1]
        head = self.head
        q = self(queries, training=training)
        d = self(documents, training=training)
        scores = tf.matmul(q, d, transpose_b=True)
        if head.kind == "dense":
            scores = scores / head.temperature  # cosine in [-1, 1] is too flat for a softmax
        labels = tf.range(tf.shape(scores)[0])
        ranking = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores))
        flops = tf.constant(0.0)
        if head.kind == "sparse":  # the dense baseline has nothing to sparsify (unit vectors)
            flops = head.flops_query * flops_regulariser(q) + head.flops_document * flops_regulariser(d)
        if head.flops_warmup and training:
            # SPLADE's quadratic ramp of the FLOPS weight: sparsify once the ranking has started to learn
            # (a full weight from step 0 can switch every term off before any is useful).
            ramp = tf.cast(self.optimizer.iterations, tf.float32) / float(head.flops_warmup)
            flops = flops * tf.minimum(1.0, tf.square(ramp))
        own = tf.linalg.diag_part(scores)[:, None]
        rank = tf.reduce_sum(tf.cast(scores >= own, tf.float32), axis=1)  # pessimistic ties, as at test time
        rr = tf.where(rank <= 10.0, 1.0 / rank, 0.0)
        values = {"ranking_loss": ranking, "flops": flops, METRIC: tf.reduce_mean(rr)}
        if head.kind == "sparse":
            values["query_nonzeros"] = tf.reduce_mean(tf.reduce_sum(tf.cast(q > 0, tf.float32), axis=1))
            values["document_nonzeros"] = tf.reduce_mean(tf.reduce_sum(tf.cast(d > 0, tf.float32), axis=1))
        return ranking + flops, values

    def _log(self, loss, values):
        self._trackers["loss"].update_state(loss)
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, values = self._step(data, training=True)
            total = loss + tf.add_n(self.losses) if self.losses else loss
        self.optimizer.minimize(total, self.trainable_variables, tape=tape)
        return self._log(total, values)

    def test_step(self, data):
        loss, values = self._step(data, training=False)
        return self._log(loss, values)


@register_model
def splade_encoder(vocab_size: int = 5000, embedding_dim: int = 64, context_width: int = 3,
                   head: str = "sparse", pooling: str = "max", dense_dim: int | None = None,
                   flops_query: float = 0.1, flops_document: float = 0.05, flops_warmup: int = 100,
                   temperature: float = 0.05, dropout: float = 0.1, num_classes: int = 0):
    """Token ids (int32, any length, 0 = padding) -> `term_weights` (vocab_size, or dense_dim).

    `num_classes` is accepted (the trainer passes the data set's class count) and unused.
    """
    if vocab_size < 3 or embedding_dim < 1 or context_width < 1:
        raise ValueError("vocab_size >= 3, embedding_dim >= 1 and context_width >= 1 are required")
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if dense_dim is not None and (head != "dense" or not isinstance(dense_dim, int) or dense_dim < 1):
        raise ValueError(f"dense_dim (an integer >= 1) goes with head = \"dense\", got {dense_dim!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    out_dim = vocab_size if head == "sparse" else (dense_dim or vocab_size)
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocab_size, embedding_dim, name="embedding")(ids)
    x = layers.Conv1D(embedding_dim, context_width, padding="same", activation="relu", name="context")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(out_dim, name="term_head")(x)
    out = TermWeights(head, pooling, pad_id=0, flops_query=flops_query, flops_document=flops_document,
                      temperature=temperature, flops_warmup=flops_warmup, name=HEAD_LAYER)([logits, ids])
    return RetrievalEncoder(ids, out, name=f"splade_{head}_encoder")
