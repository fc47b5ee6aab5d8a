"""Retrieval evaluation: ranks, MRR@k, Recall@k, term-vector sparsity and the BM25 baseline.

A retrieval test set here is a score matrix `scores[q, d]` (queries x documents, higher is
better) and, per query, the index of its one relevant document (BBC News: the article a
title belongs to). Ties are ranked *pessimistically* (a document scoring the same as the
relevant one counts as ranked above it): a sparse encoder that gives a query an all-zero
vector must not get rank 1 for free.

- `ranks(scores, relevant)`: the 1-based rank of each query's relevant document;
- `mrr_at_k(ranks, k)`: mean of 1/rank over queries, 0 when the rank is beyond k
  (Mean Reciprocal Rank, the MS MARCO passage metric SPLADE reports at k=10);
- `recall_at_k(ranks, k)`: fraction of queries whose relevant document is in the top k
  (with one relevant document per query this is the hit rate);
- `nonzero_stats(vectors)`: mean / median non-zero entries per vector and the zero fraction;
- `bm25_scores(query_tokens, doc_tokens)`: Okapi BM25 through `bm25s` (Lu, 2024,
  arXiv:2407.03618), a maintained library, not hand-written.

    >>> import numpy as np
    >>> r = ranks(np.array([[3., 1, 0], [1., 2, 0]]), np.array([0, 0]))
    >>> r.tolist(), mrr_at_k(r, 10), recall_at_k(r, 1)
    ([1, 2], 0.75, 0.5)
"""

from __future__ import annotations

import numpy as np

K = 10  # the cut-off reported everywhere (MRR@10, Recall@10)


def ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of document `relevant[q]` among row `scores[q]`, ties counted against it."""
    scores = np.asarray(scores, np.float64)
    relevant = np.asarray(relevant, np.int64)
    if scores.ndim != 2 or len(relevant) != len(scores):
        raise ValueError(f"scores must be (queries, documents) with one relevant index per query, "
                         f"got {scores.shape} and {relevant.shape}")
    if len(relevant) and (relevant.min() < 0 or relevant.max() >= scores.shape[1]):
        raise ValueError("a relevant document index is outside the score matrix")
    own = scores[np.arange(len(scores)), relevant][:, None]
    # Every other document scoring >= the relevant one ranks above it (pessimistic ties).
    above = np.sum(scores >= own, axis=1) - 1
    return (above + 1).astype(np.int64)


def mrr_at_k(rank: np.ndarray, k: int = K) -> float:
    """Mean reciprocal rank with cut-off k (a rank beyond k contributes 0)."""
    rank = np.asarray(rank)
    return float(np.mean(np.where(rank <= k, 1.0 / rank, 0.0))) if len(rank) else 0.0


def recall_at_k(rank: np.ndarray, k: int = K) -> float:
    """Fraction of queries whose relevant document is among the first k."""
    rank = np.asarray(rank)
    return float(np.mean(rank <= k)) if len(rank) else 0.0


def scores_summary(scores: np.ndarray, relevant: np.ndarray, k: int = K) -> dict:
    """`{"mrr_at_10", "recall_at_10", "median_rank"}` of a score matrix (names follow k)."""
    r = ranks(scores, relevant)
    return {f"mrr_at_{k}": round(mrr_at_k(r, k), 6), f"recall_at_{k}": round(recall_at_k(r, k), 6),
            "median_rank": float(np.median(r))}


def nonzero_stats(vectors: np.ndarray) -> dict:
    """Non-zero entries per vector (mean, median, max) and the fraction of exact zeros."""
    vectors = np.asarray(vectors)
    counts = np.count_nonzero(vectors, axis=1)
    return {"nonzeros_mean": round(float(np.mean(counts)), 3), "nonzeros_median": float(np.median(counts)),
            "nonzeros_max": int(np.max(counts)), "zero_fraction": round(float(np.mean(vectors == 0)), 6),
            "dimensions": int(vectors.shape[1])}


def bm25_scores(query_tokens: list[list[str]], doc_tokens: list[list[str]], k1: float = 1.5,
                b: float = 0.75) -> np.ndarray:
    """(queries, documents) BM25 scores from `bm25s` (Lucene's variant, its default).

    Tokens are given already split (the same word tokenizer the encoder uses), so BM25 and
    the learned encoders see exactly the same words.
    """
    import logging

    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each index build at DEBUG
    retriever = bm25s.BM25(k1=k1, b=b)
    # bm25s drops an empty document's row unless it has a placeholder token to index.
    retriever.index([tokens or [""] for tokens in doc_tokens], show_progress=False)
    scores = np.zeros((len(query_tokens), len(doc_tokens)), np.float32)
    for q, tokens in enumerate(query_tokens):
        if tokens:
            scores[q] = retriever.get_scores(tokens)
    return scores
