"""Sparse retrieval (issue 16): metrics on hand-computed toy cases, the BM25 baseline through
bm25s, the BBC title -> article splits, bad recipe values, and the SPLADE-style encoder
trained briefly, exported (query and document encoders) and run through LiteRT (real
TensorFlow, TF-MOT, converter).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfsparse.recipe import load_recipe
from tfsparse.datasets import retrieval_metrics as retrieval

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "models" / "bbc_retrieval.toml"


# ---- metrics: a toy case computed by hand ------------------------------------------------


def test_mrr_and_recall_on_a_hand_computed_toy_case():
    # 4 queries x 5 documents; query q's relevant document is relevant[q].
    scores = np.array([[0.9, 0.1, 0.2, 0.0, 0.3],    # relevant 0: best -> rank 1
                       [0.5, 0.4, 0.8, 0.1, 0.0],    # relevant 1: 0.5 and 0.8 above -> rank 3
                       [0.1, 0.2, 0.3, 0.4, 0.5],    # relevant 0: all 4 others above -> rank 5
                       [0.0, 0.7, 0.7, 0.2, 0.1]])   # relevant 2: tie with doc 1 -> pessimistic rank 2
    relevant = np.array([0, 1, 0, 2])
    r = retrieval.ranks(scores, relevant)
    assert r.tolist() == [1, 3, 5, 2]
    assert retrieval.mrr_at_k(r, 10) == pytest.approx((1 + 1 / 3 + 1 / 5 + 1 / 2) / 4)
    assert retrieval.mrr_at_k(r, 2) == pytest.approx((1 + 0 + 0 + 1 / 2) / 4)  # ranks beyond k count 0
    assert retrieval.recall_at_k(r, 1) == 0.25
    assert retrieval.recall_at_k(r, 3) == 0.75
    assert retrieval.recall_at_k(r, 10) == 1.0
    summary = retrieval.scores_summary(scores, relevant, k=3)
    assert summary == {"mrr_at_3": round((1 + 1 / 3 + 0 + 1 / 2) / 4, 6), "recall_at_3": 0.75, "median_rank": 2.5}


def test_an_all_zero_query_ranks_last_not_first():
    # A sparse encoder that switches every term of a query off scores every document 0.
    r = retrieval.ranks(np.zeros((1, 12)), np.array([3]))
    assert r.tolist() == [12]
    assert retrieval.mrr_at_k(r) == 0.0


def test_nonzero_stats_and_bad_shapes():
    stats = retrieval.nonzero_stats(np.array([[0, 1.5, 0, 0], [2, 0, 3, 0.1]]))
    assert stats["nonzeros_mean"] == 2.0 and stats["nonzeros_max"] == 3 and stats["zero_fraction"] == 0.5
    with pytest.raises(ValueError, match="relevant document index"):
        retrieval.ranks(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="one relevant index per query"):
        retrieval.ranks(np.zeros((2, 3)), np.array([0]))


def test_bm25_baseline_runs_through_bm25s():
    docs = [["bank", "rates", "rise", "bank"], ["football", "cup", "final"], ["rates", "fall"], ["film", "award"]]
    queries = [["bank", "rates"], ["cup"], ["award", "film", "unknownword"], ["nothing", "here"]]
    scores = retrieval.bm25_scores(queries, docs)
    assert scores.shape == (4, 4)
    # Only documents that share a word with the query score above zero.
    assert (scores[0] > 0).tolist() == [True, False, True, False]
    assert (scores[1] > 0).tolist() == [False, True, False, False]
    assert not scores[3].any()
    r = retrieval.ranks(scores, np.array([0, 1, 3, 2]))
    # "bank" (in one document, twice) outweighs "rates" (in two): doc 0 first; the last query has no match.
    assert r.tolist() == [1, 1, 1, 4]
    assert retrieval.mrr_at_k(r) == pytest.approx((1 + 1 + 1 + 1 / 4) / 4) and retrieval.recall_at_k(r, 1) == 0.75
    # The same numbers bm25s gives directly (our wrapper only lays them out as a matrix).
    import bm25s

    direct = bm25s.BM25(k1=1.5, b=0.75)
    direct.index(docs, show_progress=False)
    assert np.allclose(scores[0], direct.get_scores(queries[0]))


# ---- the data set (no TensorFlow) --------------------------------------------------------


def test_bbc_retrieval_queries_are_titles_and_test_articles_are_unique_and_unseen():
    from tfsparse import datasets
    from tfsparse.datasets import bbc_news, bbc_retrieval
    from tfsparse.datasets.text import Tokenizer

    assert bbc_retrieval.title_and_body("Title here\n\nBody one.\n\nBody two.") == ("Title here", "Body one.\n\nBody two.")
    recipe = load_recipe(RECIPE)
    splits = datasets.load(recipe.data, recipe.model.args)
    assert splits.x_test.shape == (len(splits.y_test), recipe.data.query_length)
    assert splits.y_test.shape[1] == recipe.data.document_length
    assert splits.task_metric == "mrr_at_10"
    # No two test documents are the same text; no training document is a test document.
    test_docs = {tuple(row) for row in splits.y_test}
    assert len(test_docs) == len(splits.y_test)
    assert not test_docs & {tuple(row) for row in splits.y_train}
    # The first test query is the title of an article whose body is the first test document.
    vocab = splits.preprocessing["vocabulary"]
    title = " ".join(vocab[t] for t in splits.x_test[0] if t > 1)
    body = " ".join(vocab[t] for t in splits.y_test[0] if t > 1)
    texts = [bbc_retrieval.title_and_body(a["text"]) for a in bbc_news.articles()]
    tok = Tokenizer(vocab, 1000)
    assert any(" ".join(vocab[t] for t in tok.ids(t_) if t > 1) == title
               and " ".join(vocab[t] for t in tok.ids(b_) if t > 1).startswith(body) for t_, b_ in texts)
    # The shipped tokenizer is the query one (the exported file's input length).
    assert splits.preprocessing["tokenizer"]["sequence_length"] == recipe.data.query_length


# ---- bad recipe values: one line, exit 2, nothing written -----------------------------------


@pytest.mark.parametrize("override, message", [
    ("data.query_length=0", "data.query_length must be an integer in 1..4096 (tokens), got 0"),
    ("data.document_length=true", "data.document_length must be an integer in 1..4096 (tokens), got True"),
    ("model.name=text_classifier", "model.name = 'text_classifier' does not go with data.name = 'bbc_retrieval'"),
    ("train.loss=mse", "train.loss = 'mse' does not go with model.name = 'splade_encoder'"),
    ("train.metric=accuracy", "train.metric = 'accuracy' does not go with model.name = 'splade_encoder'"),
])
def test_bad_recipe_values_are_one_line_errors(override, message):
    from tfsparse.cli import UserError

    with pytest.raises(UserError) as error:
        load_recipe(RECIPE, [override])
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("argument, message", [
    ({"head": "sparsest"}, "model 'splade_encoder': head must be one of sparse, dense, got 'sparsest'"),
    ({"flops_query": -1}, "model 'splade_encoder': flops_query must be a number >= 0, got -1"),
    ({"pooling": "mean"}, "model 'splade_encoder': pooling must be one of max, sum, got 'mean'"),
    ({"dense_dim": 64}, "model 'splade_encoder': dense_dim (an integer >= 1) goes with head = \"dense\", got 64"),
])
def test_bad_model_arguments_are_one_line_errors(argument, message):
    import tfsparse  # noqa: F401
    from tfsparse.cli import UserError
    from tfsparse.zoo import create_model

    with pytest.raises(UserError) as error:
        create_model("splade_encoder", vocab_size=50, embedding_dim=4, **argument)
    assert str(error.value) == message


def test_bad_value_from_the_command_line_exits_2_with_one_line(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "tfsparse.train", str(RECIPE), "--out", str(out),
                             "--set", "model.name=text_classifier"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not go with data.name = 'bbc_retrieval'" in lines[0], result.stderr
    assert not out.exists()


# ---- the encoder: trained briefly, exported, run through LiteRT --------------------------

TINY = ["model.vocab_size=600", "model.embedding_dim=16", "data.document_length=32", "data.validation_examples=0",
        "train.batch_size=32", "train.learning_rate=0.01",
        # Strong FLOPS weights ramped over 16 steps (the recipe: 100): sparse within 32 steps.
        # (Without a ramp, weights this strong switch every term off before any is useful.)
        "model.flops_query=0.5", "model.flops_document=0.25", "model.flops_warmup=16"]


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """A tiny SPLADE run (2 epochs dense + 2 pruning, 16 steps each, on 512 title/article
    pairs) exported as fp32, in this process (the public API: what the commands run)."""
    import tfsparse

    base = tmp_path_factory.mktemp("retrieval")
    run, export = base / "tiny", base / "export"
    tfsparse.train(RECIPE, run, overrides=TINY, epochs=2, max_train_examples=512)
    manifest = tfsparse.export(run, export, variants=["fp32"])
    return run, export, json.loads((export / "manifest.json").read_text())


def test_encoder_litert_outputs_equal_keras_and_are_mostly_zero(tiny_export):
    import tfsparse  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tfsparse import datasets
    from tfsparse.tflite import metadata

    run, export, manifest = tiny_export
    recipe = load_recipe(run / "config.toml")
    splits = datasets.load(recipe.data, recipe.model.args)
    sparse_file = export / f"{run.name}.sparse.fp32.tflite"
    data = sparse_file.read_bytes()
    interpreter = Interpreter(model_content=data)
    runner = interpreter.get_signature_runner("serving_default")
    keras_model = tf.keras.models.load_model(run / "sparse.keras", compile=False)
    queries = splits.x_test[:40]
    lite = np.concatenate([runner(tokens=q[None])["term_weights"] for q in queries])
    reference = keras_model.predict(queries, verbose=0)
    assert lite.shape == (40, 600)
    np.testing.assert_allclose(lite, reference, atol=1e-5, rtol=1e-5)
    # >= 95% of the term weights are exactly zero on held-out titles, and the encoder is not dead.
    assert np.mean(lite == 0) >= 0.95
    assert np.count_nonzero(lite) > 0
    docs = keras_model.predict(splits.y_test[:40], verbose=0)  # article bodies: sparse, not empty
    assert 0 < np.count_nonzero(docs) <= 0.2 * docs.size
    # Its weights are pruned (embedding table, context convolution, term head at 90%), its
    # vocabulary is in the metadata: output index i is the weight of vocabulary word i.
    info = metadata.read(data)
    assert info["sparsity"]["overall"] == pytest.approx(0.9, abs=0.01)
    assert set(info["sparsity"]["layers"]) == {"embedding", "context", "term_head"}
    assert info["input"]["normalisation"]["vocabulary"] == splits.preprocessing["vocabulary"]
    assert info["input"]["shape"] == [1, recipe.data.query_length] and info["output"]["name"] == "term_weights"


def test_manifest_scores_retrieval_through_the_file_against_bm25(tiny_export):
    from tfsparse.exporting.manifest import file_score, task_metric

    _, _, manifest = tiny_export
    assert task_metric(manifest) == "mrr_at_10"
    sparse = next(e for e in manifest["files"] if not e["dense"])
    extra = sparse["extra"]
    assert 0 <= file_score(sparse, "mrr_at_10") <= extra["recall_at_10"] <= 1
    assert extra["query_zero_fraction"] >= 0.95 and extra["queries"] == manifest["test_examples"]
    assert sparse["parity"]["max_abs_diff"] < 1e-4
    # BM25 is a real baseline on the same held-out titles: far better than chance (10 / 440) on the
    # full texts; on the tiny vocabulary's words it is scored too.
    assert extra["bm25"]["full_text"]["recall_at_10"] > 0.5
    assert 0 < extra["bm25"]["same_words"]["mrr_at_10"] <= extra["bm25"]["same_words"]["recall_at_10"]
    assert sparse["lookup_tables"] and sparse["sparse_tensors"] >= 2  # table + FC/conv kernels stored sparse


def test_document_encoder_file_equals_keras_is_mostly_zero_and_is_listed(tiny_export):
    """The document side (same weights, document length) is exported, run, paired with its own
    dense baseline and described in the model card, from the same tiny run."""
    import tfsparse  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tfsparse import datasets
    from tfsparse.exporting import manifest as manifest_io
    from tfsparse.reporting import model_card
    from tfsparse.tflite import metadata

    run, export, manifest = tiny_export
    recipe = load_recipe(run / "config.toml")
    splits = datasets.load(recipe.data, recipe.model.args)
    name = run.name
    by_path = {e["path"]: e for e in manifest["files"]}
    assert list(by_path) == [f"{name}.dense.fp32.tflite", f"{name}.sparse.fp32.tflite",
                             f"{name}.document.dense.fp32.tflite", f"{name}.document.sparse.fp32.tflite"]
    doc_entry = by_path[f"{name}.document.sparse.fp32.tflite"]
    assert doc_entry["role"] == "document_encoder" and doc_entry["runs"] and "role" not in by_path[f"{name}.sparse.fp32.tflite"]
    # Each encoder is compared with its own dense baseline (bench pairs, size ratio).
    pairs = {(d.name, s.name) for d, s in manifest_io.dense_sparse_pairs(export)}
    assert pairs == {(f"{name}.dense.fp32.tflite", f"{name}.sparse.fp32.tflite"),
                     (f"{name}.document.dense.fp32.tflite", f"{name}.document.sparse.fp32.tflite")}
    assert doc_entry["size_ratio_vs_dense"] == pytest.approx(
        by_path[f"{name}.document.dense.fp32.tflite"]["bytes"] / doc_entry["bytes"], abs=1e-3)

    data = (export / doc_entry["path"]).read_bytes()
    runner = Interpreter(model_content=data).get_signature_runner("serving_default")
    keras_model = tf.keras.models.load_model(run / "sparse.keras", compile=False)
    documents = splits.y_test[:40]
    lite = np.concatenate([runner(tokens=d[None])["term_weights"] for d in documents])
    assert lite.shape == (40, 600)
    np.testing.assert_allclose(lite, keras_model.predict(documents, verbose=0), atol=1e-5, rtol=1e-5)
    assert np.mean(lite == 0) >= 0.95 and np.count_nonzero(lite) > 0
    info = metadata.read(data)
    assert info["role"] == "document_encoder" and info["input"]["shape"] == [1, recipe.data.document_length]
    assert info["input"]["normalisation"]["sequence_length"] == recipe.data.document_length
    assert info["input"]["normalisation"]["vocabulary"] == splits.preprocessing["vocabulary"]
    # Retrieval as the app runs it (queries through the query file, documents through this one).
    extra = doc_entry["extra"]
    assert extra["documents_encoded_by"] == "the document encoder's file"
    assert extra["document_zero_fraction"] >= 0.95 and doc_entry["parity"]["max_abs_diff"] < 1e-4
    query_extra = by_path[f"{name}.sparse.fp32.tflite"]["extra"]
    assert extra["mrr_at_10"] == pytest.approx(query_extra["mrr_at_10"], abs=0.02)  # same vectors up to float error
    # The card ships the query file and says how the app uses the document file.
    card = model_card.card(export)
    assert f"**Ship `{name}.sparse.fp32.tflite`**" in card
    assert "## Document encoder: indexing documents on the device" in card and f"`{doc_entry['path']}`" in card
    assert "fun buildIndex" in card
