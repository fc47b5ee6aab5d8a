"""The model card's retrieval section: quality against BM25 and how an app scores documents.

For a retrieval encoder's export (`tfsparse.zoo.splade`; the manifest's `task_metric` is
`mrr_at_10`), `section(manifest, pick, out)` returns Markdown lines: MRR@10 / Recall@10 of
the shipped file next to BM25 on the same held-out titles, the non-zero terms per query and
document, the document encoder files (`<name>.document.*.tflite`, the same weights at the
document length) and how an app uses them, and a Kotlin snippet (with the same algorithm in pseudo-code) that scores
documents by a sparse dot product over an inverted index: only the query's non-zero terms
are looked up, which is why the FLOPS regulariser keeps vectors short. No TensorFlow here.
"""

from __future__ import annotations

from tfsparse.exporting.manifest import DOCUMENT_ROLE, role_of
from tfsparse.reporting.export_table import format_pct, format_size

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


def document_files(manifest: dict) -> list[dict]:
    """The runnable document encoder files, sparse first (smallest first), then the dense baseline."""
    files = [e for e in manifest["files"] if role_of(e) == DOCUMENT_ROLE and e.get("runs", True)]
    return sorted(files, key=lambda e: (e["dense"], e.get("bytes") or 0))


def _document_encoder(manifest: dict, pick: dict | None) -> list[str]:
    files = document_files(manifest)
    if not files:
        return []
    # The document file of the shipped query file's variant: the pair an app ships together.
    variant = (pick or {}).get("variant", "fp32")
    doc = next((e for e in files if not e["dense"] and e.get("variant") == variant), files[0])
    extra = doc.get("extra") or {}
    rows = []
    for e in files:
        x = e.get("extra") or {}
        mrr = f"{x['mrr_at_10']:.4f}" if isinstance(x.get("mrr_at_10"), (int, float)) else "-"
        rows.append(f"| `{e['path']}` | {format_size(e.get('bytes'))} | "
                    f"{format_pct(x.get('document_zero_fraction'))} | {x.get('document_nonzeros_mean', '-')} | {mrr} |")
    length = extra.get("document_length", "the document length")
    return ["## Document encoder: indexing documents on the device", "",
            f"`{doc['path']}` is the same network with the same weights as the query file, with its input at "
            f"{length} tokens (the first {length} words of a document; same tokenizer and vocabulary, stored in "
            "its metadata with this length). An app that indexes its own documents (notes, messages, "
            "downloaded articles) ships both files:", "",
            "1. **Once per document** (when it is added or changed; in the background): run the document "
            "encoder, keep only the non-zero entries of its output (term id -> weight) and append them to the "
            "inverted index below (term -> posting list of documents and weights). Store the index; the "
            "document file is not needed at search time.",
            "2. **At search time**: run the query file on the typed query and score documents over the index "
            "(next section). Only the query encoder runs per search.", "",
            "An app whose index is built off the device (a server, a build step) does not need the document file.",
            "", "| file | size | zeros in document vectors | non-zero terms per document | MRR@10 (both encoders through LiteRT) |",
            "|---|---|---|---|---|", *rows, "",
            "MRR@10 here: the held-out titles encoded by the query file of the same variant, the held-out "
            "articles by this file, both through LiteRT (the retrieval quality above uses the Keras model "
            "for the documents).", ""]


def section(manifest: dict, pick: dict | None, out: dict) -> list[str]:
    """Markdown lines for the card (empty for any other task)."""
    if not is_retrieval(manifest):
        return []
    lines = (_quality(pick) if pick else []) + _document_encoder(manifest, pick)
    if out.get("name") != "term_weights":  # the dense-embedding baseline: plain cosine similarity
        return lines + ["## Scoring documents", "",
                        "The output is a unit-length dense vector: score every stored document vector by its dot "
                        "product with the query's (= cosine similarity) and keep the 10 best.", ""]
    return lines + [
        "## Scoring documents: sparse dot product over an inverted index", "",
        "The output has one weight per vocabulary word (index = token id in the metadata's `vocabulary`), "
        "almost all exactly zero. Encode every document once (the same network at the document length; "
        "keep only its non-zero terms; on the device: the document encoder above), store them as an inverted index (term -> documents with that term "
        "and their weights), and for a query visit only the posting lists of its non-zero terms:", "",
        "```kotlin",
        "// postings[term]: ids of the documents whose vector has this term; weights[term]: those values",
        "class InvertedIndex(val postings: Array<IntArray>, val weights: Array<FloatArray>, val documents: Int)",
        "",
        "// Once: vectors[d] = output[0] of the document encoder on document d's token ids",
        "fun buildIndex(vectors: List<FloatArray>, vocabulary: Int): InvertedIndex {",
        "    val docs = Array(vocabulary) { ArrayList<Int>() }",
        "    val ws = Array(vocabulary) { ArrayList<Float>() }",
        "    vectors.forEachIndexed { d, v ->",
        "        for (term in v.indices) if (v[term] != 0f) { docs[term].add(d); ws[term].add(v[term]) }",
        "    }",
        "    return InvertedIndex(Array(vocabulary) { docs[it].toIntArray() },",
        "        Array(vocabulary) { ws[it].toFloatArray() }, vectors.size)",
        "}",
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
