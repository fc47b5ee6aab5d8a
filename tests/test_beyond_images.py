"""Speech, text and RL recipes through the same `python -m tfsparse.train` pipeline, on tiny slices.

Each smoke run is the real CLI with real TensorFlow/TF-MOT (`--epochs 1
--max-train-examples 256`); the data modules' own logic (splits, tokenizer,
optimal policy) is checked without TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfsparse.recipe import load_recipe

ROOT = Path(__file__).parent.parent
SMOKE = ["--epochs", "1", "--max-train-examples", "256", "--quiet"]


def train(recipe: str, out: Path, *extra: str, cache: Path | None = None) -> dict:
    """A smoke run of `recipe` into `out` (data from `cache` when given); its metrics.json."""
    env = {**os.environ, "TFSPARSE_CACHE": str(cache)} if cache else None
    result = subprocess.run([sys.executable, "-m", "tfsparse.train", str(ROOT / "models" / recipe), "--out", str(out),
                             *SMOKE, *extra], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


# ---- text: BBC News ---------------------------------------------------------------------


def test_tokenizer_is_deterministic_and_maps_unknown_words_to_oov():
    from tfsparse.datasets.text import OOV_ID, PAD_ID, Tokenizer

    texts = ["Rates rise, rates fall.", "The bank's rates", "goal goal goal"]
    tok = Tokenizer.fit(texts, vocab_size=5, sequence_length=6)
    # Most frequent first, ties alphabetical: rates (3), goal (3) -> goal, rates; then bank's (1) < fall (1).
    assert tok.vocabulary == ["<pad>", "<oov>", "goal", "rates", "bank's"]
    ids = tok.encode(["RATES rise goal"])[0]
    assert list(ids) == [3, OOV_ID, 2, PAD_ID, PAD_ID, PAD_ID]
    assert Tokenizer.from_config(json.loads(json.dumps(tok.get_config()))).ids("rates") == tok.ids("rates")
    assert len(tok.ids("word " * 50)) == 6  # truncated to sequence_length


def test_bbc_splits_are_stratified_disjoint_and_fixed():
    from tfsparse.datasets.bbc_news import split_indices

    labels = np.repeat(np.arange(5), [510, 386, 417, 511, 401])
    train, val, test = split_indices(labels, 200)
    assert len(set(train) | set(val) | set(test)) == len(labels) == len(train) + len(val) + len(test)
    for part in (train, test):
        shares = np.bincount(labels[part], minlength=5) / len(part)
        assert np.allclose(shares, np.bincount(labels) / len(labels), atol=0.01)
    again = split_indices(labels, 200)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))


@pytest.fixture(scope="module")
def bbc_splits():
    from tfsparse import datasets

    recipe = load_recipe(ROOT / "models" / "bbc_news.toml")
    return recipe, datasets.load(recipe.data, recipe.model.args)


def test_bbc_vocabulary_comes_from_the_training_split_only(bbc_splits):
    from tfsparse.datasets import bbc_news
    from tfsparse.datasets.text import Tokenizer, words

    recipe, splits = bbc_splits
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (1581, 200, 444)
    vocabulary = splits.preprocessing["vocabulary"]
    assert len(vocabulary) == recipe.model.args["vocab_size"]
    # Refit on the training texts alone reproduces the shipped vocabulary and the token ids.
    items = bbc_news.articles()
    labels = np.array([bbc_news.LABELS.index(a["label"]) for a in items])
    train, _, test = bbc_news.split_indices(labels, recipe.data.validation_examples)
    refit = Tokenizer.fit([items[i]["text"] for i in train], len(vocabulary), splits.x_train.shape[1])
    assert refit.vocabulary == vocabulary
    assert np.array_equal(refit.encode([items[i]["text"] for i in test]), splits.x_test)
    # A word that occurs only in test articles cannot be in the vocabulary.
    train_words = {w for i in train for w in words(items[i]["text"])}
    test_only = {w for i in test for w in words(items[i]["text"])} - train_words
    assert test_only and not test_only & set(vocabulary)


def test_bbc_smoke_run_prunes_the_embedding(quick_pipeline):
    m = quick_pipeline("bbc_news").metrics()
    assert m["metric"] == "accuracy"
    assert set(m["layer_sparsity"]) == {"embedding", "hidden"}
    assert abs(m["layer_sparsity"]["embedding"] - 0.9) < 0.01


# ---- reinforcement learning: FrozenLake ----------------------------------------------------


def test_value_iteration_policy_beats_fixed_policies_and_ties_are_deterministic():
    from tfsparse.datasets import frozenlake as fl

    env = fl.make_env(is_slippery=True, map_name="4x4")
    q = fl.value_iteration(env.unwrapped.P, 16, 4)
    optimal = fl.greedy(q)
    assert np.all(q[fl.terminal_states(env.unwrapped.desc)] == 0)
    assert np.all(optimal[fl.terminal_states(env.unwrapped.desc)] == 0)  # all-equal row -> action 0
    best = fl.success_rate(env, optimal, episodes=300)
    # Slippery 4x4 with the optimal policy reaches the goal ~74% of the time; any fixed action far less.
    assert best > 0.6
    assert all(fl.success_rate(env, np.full(16, a), episodes=300) < 0.2 for a in range(4))
    assert fl.success_rate(env, optimal, episodes=300) == best  # seeded episodes: reproducible


def test_frozenlake_needs_the_slippery_setting_stated():
    from tfsparse import datasets
    from tfsparse.cli import UserError

    recipe = load_recipe(ROOT / "models" / "frozenlake.toml")
    recipe.data.is_slippery = None
    with pytest.raises(UserError, match="is_slippery"):
        datasets.load(recipe.data, recipe.model.args)
    with pytest.raises(UserError, match="num_states"):
        datasets.load(load_recipe(ROOT / "models" / "frozenlake.toml").data, {"num_states": 16})


def test_frozenlake_smoke_run_scores_dense_and_sparse_policies(quick_pipeline):
    """The run's success rates; that the exported TFLite policy scores exactly the same is
    checked on the exported files in test_export_tasks (same shared run)."""
    m = quick_pipeline("frozenlake").metrics()
    assert abs(m["overall_sparsity"] - 0.8) < 0.01
    for which in ("dense", "sparse"):
        extra = m["extra"][which]
        assert extra["episodes"] >= 1000 and extra["is_slippery"] is True
        assert 0 <= extra["success_rate"] <= 1 and extra["optimal_success_rate"] > 0.5


# ---- speech: synthetic keywords ------------------------------------------------------------


def test_log_mel_front_end_equals_tensorflows_signal_ops():
    """The numpy front end (what an app re-implements) matches tf.signal's STFT + mel matrix."""
    import tensorflow as tf

    from tfsparse.datasets import features

    c = features.FRONT_END
    audio = np.random.default_rng(0).standard_normal((2, c["clip_samples"])).astype(np.float32) * 0.1
    stft = tf.signal.stft(audio, c["frame_length"], c["hop_length"], c["fft_length"], window_fn=tf.signal.hann_window)
    mel = tf.signal.linear_to_mel_weight_matrix(c["num_mel_bins"], c["fft_length"] // 2 + 1, c["sample_rate"],
                                                c["lower_hz"], c["upper_hz"])
    reference = tf.math.log(tf.matmul(tf.abs(stft) ** 2, mel) + c["log_offset"]).numpy()
    ours = features.log_mel(audio)
    assert ours.shape == (2, 49, 40) == reference.shape
    assert np.max(np.abs(ours - reference)) < 1e-3


def test_speech_splits_are_by_voice_and_deterministic():
    from tfsparse.datasets import speech_keywords as kw

    split = kw.variant_split()
    assert sorted(split) == sorted(kw.VARIANTS)
    assert list(split.values()).count("test") == kw.TEST_VARIANTS
    assert list(split.values()).count("val") == kw.VAL_VARIANTS
    items = kw.utterances()
    assert items == kw.utterances()
    assert len(kw.LABELS) == 12 and {i["label"] for i in items} == set(range(1, 12))
    # Every speaker (accent + variant) says every keyword; variants never straddle splits.
    voices = {(i["accent"], i["variant"]) for i in items}
    assert len(voices) == len(kw.ACCENTS) * len(kw.VARIANTS)


def test_augmentation_shifts_and_adds_noise_reproducibly():
    from tfsparse.datasets import speech_keywords as kw

    speech = (np.sin(np.arange(4000) / 5) * 20000).astype(np.int16)
    a = kw.augment(speech, np.random.default_rng(1))
    b = kw.augment(speech, np.random.default_rng(1))
    c = kw.augment(speech, np.random.default_rng(2))
    assert a.shape == (16000,) and np.array_equal(a, b) and not np.array_equal(a, c)
    loud = np.flatnonzero(np.abs(a) > 0.1)
    assert 3000 < loud[-1] - loud[0] < 4100  # the word is in there once, shifted
    assert np.std(a[np.abs(a) < 0.05]) > 0  # noise outside the word
    silence = kw.augment(None, np.random.default_rng(3))
    assert 0 < np.sqrt(np.mean(silence ** 2)) < 0.05


@pytest.fixture(scope="module")
def tiny_speech_cache(tmp_path_factory, monkeypatch_module):
    """A real espeak-ng synthesis of 6 voice variants x 2 accents (288 clips), in a private cache."""
    from tfsparse.datasets import speech_keywords as kw

    cache = tmp_path_factory.mktemp("cache")
    monkeypatch_module.setenv("TFSPARSE_CACHE", str(cache))
    monkeypatch_module.setattr(kw, "VARIANTS", ["m1", "f2", "croak", "klatt", "whisper", "Andy"])
    monkeypatch_module.setattr(kw, "ACCENTS", ["en-us", "en-gb-scotland"])
    monkeypatch_module.setattr(kw, "VAL_VARIANTS", 1)
    monkeypatch_module.setattr(kw, "TEST_VARIANTS", 1)
    splits = kw.load(None, {})
    return cache, splits


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_synthesised_clips_are_speech_and_features_standardised(tiny_speech_cache):
    from tfsparse.datasets import speech_keywords as kw

    _, splits = tiny_speech_cache
    data = kw.clips()
    lengths = np.diff(data["offsets"])
    assert len(lengths) == 6 * 2 * 24 and np.all(lengths > 1600) and np.all(lengths <= 16000)
    assert splits.x_train.shape[1:] == (49, 40, 1)
    assert set(np.unique(splits.y_test)) == set(range(12))  # every class, silence included, in test
    standardised = splits.x_train * splits.preprocessing["scale"] + splits.preprocessing["offset"]
    assert abs(standardised.mean()) < 1e-3 and abs(standardised.std() - 1) < 1e-3
    assert splits.preprocessing["num_mel_bins"] == 40 and "SYNTHETIC" in splits.preprocessing["note"]


def test_kws_smoke_run_prunes_convolutions_and_classifier(tiny_speech_cache, tmp_path):
    m = train("kws_ds_cnn.toml", tmp_path / "kws", cache=tiny_speech_cache[0])
    assert sorted(m["layer_sparsity"]) == sorted(["conv1", "ds1_pw", "ds2_pw", "ds3_pw", "ds4_pw", "logits"])
    assert abs(m["overall_sparsity"] - 0.8) < 0.01


@pytest.mark.parametrize("stem, verdict", [("xnnpack", "sparse"), ("hello_edge", "dense")])
def test_only_the_xnnpack_stem_lets_xnnpack_run_ds_cnn_sparse(stem, verdict):
    from tests.graphs import convert, prune_pointwise
    from tfsparse.tflite.inspector import inspect_bytes, manifest_summary
    from tfsparse.zoo import create_model

    # 1x1 convolutions 80% zero, as the recipe prunes them.
    model = prune_pointwise(create_model("ds_cnn", filters=16, blocks=2, stem=stem), 0.8)
    assert model.output_shape == (None, 12) and model.get_layer("conv1").output_shape[1:3] == (25, 20)
    assert manifest_summary(inspect_bytes(convert(model, "fp32")))["xnnpack"]["verdict"] == verdict


# ---- speech: sparse autoencoder ------------------------------------------------------------


def test_segment_pooling_and_the_codes_classifier():
    from tfsparse.datasets.speech_frames import segment_pool, softmax_regression_accuracy

    frames = np.arange(2 * 49 * 3, dtype=float).reshape(2, 49, 3)
    pooled = segment_pool(frames)
    assert pooled.shape == (2, 7 * 3) and np.allclose(pooled[0, :3], frames[0, :7].mean(axis=0))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = np.eye(3)[y] * 2 + rng.normal(0, 0.5, (300, 3))  # separable
    assert softmax_regression_accuracy(x[:200], y[:200], x[200:], y[200:], 3) > 0.9
    assert softmax_regression_accuracy(x[:200], rng.permutation(y[:200]), x[200:], y[200:], 3) < 0.6


def test_autoencoder_smoke_run_reports_code_sparsity(tiny_speech_cache, tmp_path):
    m = train("speech_autoencoder.toml", tmp_path / "ae", cache=tiny_speech_cache[0])
    assert m["metric"] == "mse" and abs(m["overall_sparsity"] - 0.8) < 0.01
    for which in ("dense", "sparse"):
        extra = m["extra"][which]
        assert 0 <= extra["code_zero_fraction"] <= extra["code_below_0.01_fraction"] <= 1
        assert extra["reconstruction_mse"] == pytest.approx(m[f"{which}_score"], rel=1e-3)
        assert 0 <= extra["code_classifier_accuracy"] <= 1
