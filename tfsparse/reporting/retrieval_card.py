"""The model card's retrieval section: quality against BM25 and how an app scores documents.

For a retrieval encoder's export (`tfsparse.zoo.splade`; the manifest's `task_metric` is
`mrr_at_10`), `section(manifest, pick, out)` returns Markdown lines: MRR@10 / Recall@10 of
the shipped file next to BM25 on the same held-out titles, the non-zero terms per query and
document, and a Kotlin snippet (with the same algorithm in pseudo-code) that scores
documents by a sparse dot product over an inverted index: only the query's non-zero terms
are looked up, which is why the FLOPS regulariser keeps vectors short. No TensorFlow here.
"""

from __future__ import annotations

TASK_METRIC = "mrr_at_10"


def is_retrieval(manifest: dict) -> bool:
    return manifest.get("task_metric") == TASK_METRIC


def _quality(pick: dict) -> list[str]:
    extra = pick.get("extra") or {}
    if "mrr_at_10" not in extra:
        return []
    bm25 = extra.get("bm25") or {}
    same, full = bm25.get("same_words") or {}, bm25.get("full_text") or {}
    rows = [f"| `{pick['path']}` (queries through this file) | {extra['mrr_at_10']:.4f} | {extra['recall_at_10']:.4f} |"]
    if same:
        rows.append(f"| BM25, same words ({bm25.get('library', 'bm25s')}) | {same['mrr_at_10']:.4f} | {same['recall_at_10']:.4f} |")
    if full:
        rows.append(f"| BM25, full titles and bodies | {full['mrr_at_10']:.4f} | {full['recall_at_10']:.4f} |")
    return ["## Retrieval quality", "",
            f"Each held-out title retrieves its article among {extra.get('corpus', 'the test articles')} "
            f"({extra.get('queries', '?')} queries; scoring: {extra.get('scoring', 'dot product')}; documents = "
            f"the first {extra.get('document_length', '?')} words of each body, encoded by the Keras model of "
            "the same weights).", "",
            "| ranker | MRR@10 | Recall@10 |", "|---|---|---|", *rows, "",
            f"Non-zero entries per query vector: {extra.get('query_nonzeros_mean', '?')} (mean) of "
            f"{extra.get('query_dimensions', '?')}; per document: {extra.get('document_nonzeros_mean', '?')}.", ""]


def section(manifest: dict, pick: dict | None, out: dict) -> list[str]:
    """Markdown lines for the card (empty for any other task)."""
    if not is_retrieval(manifest):
        return []
    lines = _quality(pick) if pick else []
    if out.get("name") != "term_weights":  # the dense-embedding baseline: plain cosine similarity
        return lines + ["## Scoring documents", "",
                        "The output is a unit-length dense vector: score every stored document vector by its dot "
                        "product with the query's (= cosine similarity) and keep the 10 best.", ""]
    return lines + [
        "## Scoring documents: sparse dot product over an inverted index", "",
        "The output has one weight per vocabulary word (index = token id in the metadata's `vocabulary`), "
        "almost all exactly zero. Encode every document once (the same network at the document length; "
        "keep only its non-zero terms), store them as an inverted index (term -> documents with that term "
        "and their weights), and for a query visit only the posting lists of its non-zero terms:", "",
        "```kotlin",
        "// postings[term]: ids of the documents whose vector has this term; weights[term]: those values",
        "class InvertedIndex(val postings: Array<IntArray>, val weights: Array<FloatArray>, val documents: Int)",
        "",
        "fun search(query: FloatArray, index: InvertedIndex, k: Int = 10): List<Pair<Int, Float>> {",
        "    val scores = FloatArray(index.documents)",
        "    for (term in query.indices) {",
        "        val q = query[term]",
        "        if (q == 0f) continue                    // most terms: nothing to do",
        "        val docs = index.postings[term]",
        "        val w = index.weights[term]",
        "        for (i in docs.indices) scores[docs[i]] += q * w[i]",
        "    }",
        "    return scores.indices.filter { scores[it] > 0f }",
        "        .sortedByDescending { scores[it] }.take(k).map { it to scores[it] }",
        "}",
        "",
        "// query = output[0] of interpreter.run(tokenIds, output) (see Android below)",
        "```", "",
        "The same in pseudo-code (Swift or any language): `scores = zeros(documents); for term where "
        "query[term] != 0: for (doc, w) in postings[term]: scores[doc] += query[term] * w; top k of scores`. "
        "The work is the sum of the posting-list lengths of the query's non-zero terms, not the vocabulary size.", ""]
