"""`python -m tfsparse.export` on the non-image recipes: an RL policy (FrozenLake) and a text
classifier (BBC News), each a tiny real training run exported with the real converter and
checked with the real LiteRT interpreter. (The speech recipes need synthesised speech, minutes
to build: their export, including `[export] output_layer`, is shown in the issue 6 report.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfsparse.cli import UserError
from tfsparse.exporting import exporter as export_cli
from tfsparse.recipe import load_recipe
from tfsparse.tflite import metadata as tflite_metadata

ROOT = Path(__file__).parent.parent
TINY = ["--epochs", "1", "--max-train-examples", "256"]


@pytest.fixture(scope="module")
def frozenlake(quick_pipeline):
    run = quick_pipeline("frozenlake")
    return run.export_dir, run.manifest(), run.run_dir


@pytest.fixture(scope="module")
def bbc_news(quick_pipeline):
    run = quick_pipeline("bbc_news")
    return run.export_dir, run.manifest(), run.run_dir


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def test_frozenlake_files_carry_the_success_rate_of_their_own_policy(frozenlake):
    from tfsparse.datasets import frozenlake as lake

    out, manifest, run_dir = frozenlake
    recipe = load_recipe(ROOT / "models" / "frozenlake.toml")
    env = lake.make_env(recipe.data.is_slippery, recipe.data.map_name)
    assert manifest["metric"] == "accuracy"
    assert {"hidden1", "hidden2", "actions"} <= set(manifest["sparsity"]["layers"])
    for entry in manifest["files"]:
        assert entry["runs"], entry
        assert entry["metric"] == "accuracy" and entry["accuracy"] == entry["score"]
        # The greedy policy of THIS file, from LiteRT, rolled out again: the manifest's figure is its own.
        runner = _interpreter(out / entry["path"]).get_signature_runner()
        info = tflite_metadata.read((out / entry["path"]).read_bytes())
        assert info["input"]["name"] == "state" and info["input"]["dtype"] == "float32"
        states = lake.one_hot(np.arange(64), 64)
        policy = np.array([np.argmax(runner(state=s[None])["probabilities"]) for s in states])
        assert entry["extra"]["success_rate"] == pytest.approx(lake.success_rate(env, policy))
        assert 0.0 <= entry["extra"]["success_rate"] <= entry["extra"]["optimal_success_rate"] + 0.05
    # ...and it is the Keras model's: the sparse file scores exactly what training measured.
    trained = json.loads((run_dir / "metrics.json").read_text())["extra"]
    sparse = next(e for e in manifest["files"] if not e["dense"])
    assert sparse["extra"]["success_rate"] == trained["sparse"]["success_rate"]


def test_bbc_news_takes_int32_token_ids_and_counts_the_embedding(bbc_news):
    import tensorflow as tf

    from tfsparse import datasets

    out, manifest, run_dir = bbc_news
    assert manifest["sparsity"]["layers"]["embedding"] > 0.5  # pruned: counted via prunable_kernel
    entry = next(e for e in manifest["files"] if not e["dense"])
    info = tflite_metadata.read((out / entry["path"]).read_bytes())
    assert info["input"]["dtype"] == "int32" and info["input"]["name"] == "tokens"
    assert info["input"]["normalisation"]["kind"] == "tokens"
    assert "vocabulary" in info["input"]["normalisation"]  # the app tokenizes with what the file carries
    assert "pixel" not in info["input"]["formula"]
    assert info["labels"] and info["output"]["shape"] == [1, len(info["labels"])]
    interpreter = _interpreter(out / entry["path"])
    assert interpreter.get_input_details()[0]["dtype"] == np.int32
    recipe = load_recipe(ROOT / "models" / "bbc_news.toml")
    splits = datasets.load(recipe.data, recipe.model.args)
    tokens = splits.x_test[:4].astype(np.int32)
    runner = interpreter.get_signature_runner()
    litert = np.concatenate([runner(tokens=t[None])["probabilities"] for t in tokens])
    keras = tf.keras.models.load_model(run_dir / "sparse.keras", compile=False)(tokens).numpy()
    np.testing.assert_allclose(litert, keras, atol=1e-5)
    assert entry["parity"]["top1_agreement"] is not None and entry["parity"]["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("metric, expected", [("accuracy", 0.5), ("mse", 0.25), ("mae", 0.5)])
def test_score_follows_the_recipe_metric(metric, expected):
    out = np.array([[0.9, 0.1], [0.4, 0.6]], np.float32)
    y = {"accuracy": np.array([0, 0]), "mse": out + 0.5, "mae": out - 0.5}[metric]
    assert export_cli.metric_score(metric, out, y) == pytest.approx(expected)
    assert export_cli.metric_score(None, out, y) is None  # a sub-model: no task metric


@pytest.mark.parametrize("value", ["", 3])
def test_output_layer_must_be_a_layer_name(value, tmp_path):
    recipe = (ROOT / "models" / "speech_autoencoder.toml").read_text().replace('output_layer = "code"',
                                                                              f"output_layer = {json.dumps(value)}")
    (tmp_path / "r.toml").write_text(recipe)
    with pytest.raises(UserError, match="output_layer"):
        load_recipe(tmp_path / "r.toml")
