"""The user's own data (`[data]` image_folder, arrays, text_csv, audio_folder), streamed with tf.data.

Real TensorFlow, converter and LiteRT on tiny data the tests write (a folder of PNGs with a corrupt
file goes through the whole pipeline in tests/test_doctor.py, with a doctored MobileNetV2), an `.npz` exported
with int8 calibrated on it, a CSV and a folder of WAVs read through the tokenizer and the
log-mel front end, bad input (one line naming the file or value, exit 2, nothing written), and
multi-worker training with two worker processes on 127.0.0.1.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tfsparse.cli import run_main
from tfsparse.recipe import DataConfig, load_recipe
from tfsparse.tflite import metadata as tflite_metadata

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["blue", "green", "red"]  # sorted: the label order the data set must produce


def write_pngs(root: Path, per_class: int, size: int = 24, seed: int = 0):
    """Noise images whose class is the dominant colour channel (learnable in a few steps).

    Written with Pillow (matplotlib's dependency): TensorFlow's eager encode_png is ~10x slower."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for channel, name in ((2, "blue"), (1, "green"), (0, "red")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 110, (size, size, 3)).astype(np.uint8)
            image[..., channel] += 140
            Image.fromarray(image).save(root / name / f"{i:04d}.png")


def recipe_text(data: str, model: str = 'name = "mobilenet_v1"\nwidth_multiplier = 0.25\ninput_size = 24\ndepth = 2',
                variants: str = '["fp32"]') -> str:
    return (f"[model]\n{model}\n\n[data]\n{data}\n\n[train]\ndense_epochs = 2\nepochs = 2\nbatch_size = 32\n"
            f"learning_rate = 0.01\n\n[pruning]\nfinal_sparsity = 0.8\nfrequency = 1\n\n"
            f"[export]\nvariants = {variants}\nrepresentative_examples = 16\n")


def train_cli(*argv) -> int:
    from tfsparse.training import command

    return run_main("tfsparse.train", command.main, [str(a) for a in argv])


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images") / "photos"
    write_pngs(root, 100)
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "red" / "notes.txt").write_text("not an image, not counted as unreadable")
    return root


def test_image_folder_splits_cache_and_augmentation(images, tmp_path):
    from tfsparse import datasets

    config = DataConfig(name="image_folder", path=str(images), image_size=[16, 20], validation_split=0.2,
                        test_split=0.1, cache=str(tmp_path / "cache"), augment=["flip", "crop"],
                        pixel_scale=1 / 127.5, pixel_offset=-1.0)
    splits = datasets.load(config, {})
    assert splits.labels == CLASSES and splits.x_train.shape == (210, 16, 20, 3)
    # What the model takes from a pixel ([-1, 1] here): training and the metadata read it.
    assert splits.preprocessing["scale"] == pytest.approx(1 / 127.5) and splits.preprocessing["offset"] == -1.0
    assert datasets.load(DataConfig(name="image_folder", path=str(images), image_size=8), {}).preprocessing[
        "scale"] == pytest.approx(1 / 255)
    assert len(splits.x_val) == 60 and len(splits.x_test) == 30
    assert not set(splits.x_train.keys) & set(splits.x_test.keys)  # no file in two splits
    # The test split reads as an array (export does this); labels match the folder names.
    x_test = np.asarray(splits.x_test)
    assert x_test.shape == (30, 16, 20, 3) and x_test.dtype == np.uint8
    dominant = np.argmax(x_test.reshape(30, -1, 3).mean(axis=1), axis=1)  # 0 r, 1 g, 2 b
    assert list(np.array(CLASSES)[splits.y_test]) == [["red", "green", "blue"][c] for c in dominant]
    # Training batches: cached decoded images (files appear), augmented, all 210 each epoch.
    ds = splits.x_train.dataset(64, shuffle=True, seed=1)
    first = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    second = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    assert len(first) == 210 and sorted(first) == sorted(splits.y_train) and list(first) != list(second)
    assert any(p.name.startswith("train-") for p in (tmp_path / "cache").iterdir())
    # Files are listed class by class, and the cache replays its order: with a small shuffle buffer
    # the first batch must still mix the classes (the keys are mixed before the cache).
    small = datasets.load(DataConfig(name="image_folder", path=str(images), image_size=8, validation_split=0.2,
                                     cache=str(tmp_path / "cache2"), shuffle_buffer=4), {})
    first_batch = next(small.x_train.dataset(30, shuffle=True, seed=0).as_numpy_iterator())[1]
    assert len(set(first_batch)) == 3, first_batch


def test_image_folder_checks_only_changed_files_again(tmp_path, monkeypatch):
    """Every image is decoded when a folder is first opened; a later open decodes only files that
    are new or changed (size, modification time), and the verdicts stay the same."""
    import json
    import os

    from PIL import Image

    from tfsparse import datasets
    from tfsparse.datasets import readability
    from tfsparse.datasets.image_folder import check_image
    from tfsparse.datasets.streamed import describe

    monkeypatch.setenv("TFSPARSE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    write_pngs(root, 5, size=8)
    broken = root / "red" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    config = DataConfig(name="image_folder", path=str(root), image_size=8, validation_split=0.2, test_split=0.2)

    def opened():
        report = datasets.load(config, {}).data_report
        return report["checked_now"], [f["path"] for f in report["unreadable_files"]], report

    assert opened()[:2] == (16, [str(broken)])
    checked, unreadable, report = opened()
    assert (checked, unreadable) == (0, [str(broken)])
    assert "0 of 16 files decoded to check them (the rest unchanged" in describe(report)
    # The broken file repaired, a good one broken, one added: those three are decoded again.
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken)
    spoiled = root / "green" / "0001.png"
    spoiled.write_bytes(b"garbage")
    os.utime(spoiled, ns=(0, 0))  # an old timestamp does not hide a change of size
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "blue" / "new.png")
    assert opened()[:2] == (3, [str(spoiled)])
    # Verdicts of another check (another decoder version) are not reused.
    cache = readability.verdict_file(root, check_image)
    saved = json.loads(cache.read_text())
    cache.write_text(json.dumps({**saved, "check": saved["check"] + " (older TensorFlow)"}))
    assert opened()[:2] == (17, [str(spoiled)])
    bad, checked = readability.scan([str(spoiled)], check_image, root=root, remember=False)
    assert checked == 1 and list(bad) == [str(spoiled)]


def test_arrays_npz_memory_mapped_and_int8_from_user_data(tmp_path):
    import tfsparse
    from tfsparse import datasets
    from tfsparse.datasets.arrays import ArraySplit

    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 3, 200), rng.integers(0, 3, 40)
    x_train = rng.integers(0, 255, (200, 16, 16, 3)).astype(np.uint8)
    x_test = rng.integers(0, 255, (40, 16, 16, 3)).astype(np.uint8)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             class_names=np.array(["cat", "dog", "eel"]))
    recipe_file = tmp_path / "arrays.toml"
    recipe_file.write_text(recipe_text(f'name = "arrays"\npath = "{path}"\nvalidation_split = 0.25',
                                       'name = "mobilenet_v1"\nwidth_multiplier = 0.25\ninput_size = 16\ndepth = 2',
                                       '["fp32", "int8"]'))
    recipe = load_recipe(recipe_file)
    splits = datasets.load(recipe.data, recipe.model.args)
    assert isinstance(splits.x_train, ArraySplit) and isinstance(splits.x_train.source, np.memmap)
    assert splits.data_report["mmap"] == {"x_train": True, "x_test": True}
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (150, 50, 40)
    # Batches are the stored rows, in the keys' order.
    xb, yb = next(iter(splits.x_train.dataset(150)))
    np.testing.assert_array_equal(xb.numpy(), x_train[splits.x_train.keys])
    np.testing.assert_array_equal(yb.numpy(), y_train[splits.x_train.keys])
    model = tfsparse.create_model("mobilenet_v1", width_multiplier=0.25, input_size=16, depth=2, num_classes=3)
    manifest = tfsparse.export(model, tmp_path / "export", recipe=recipe, name="mine", variants=["int8"])
    entry = [f for f in manifest.files if f["variant"] == "int8"][0]
    assert entry["runs"] and manifest.data["test_examples"] == 40 and entry["accuracy"] is not None
    meta = tflite_metadata.read((tmp_path / "export" / entry["path"]).read_bytes())
    assert meta["labels"] == ["cat", "dog", "eel"]


def test_text_csv_tokenized_and_bad_rows_reported(tmp_path, monkeypatch):
    from tfsparse import datasets

    monkeypatch.setenv("TFSPARSE_CACHE", str(tmp_path / "cache"))  # the token-id file goes here, not in ~/.cache
    from tfsparse.datasets.text import Tokenizer

    path = tmp_path / "reviews.csv"
    topics = {"sport": "goal match team", "music": "song band guitar", "food": "bread cheese soup"}
    rows = [{"body": f"{words} number {i}", "topic": topic} for i in range(20) for topic, words in topics.items()]
    rows[5]["body"] = "a quoted, multi-line\ntext about goal"
    rows.insert(7, {"body": "   ", "topic": "sport"})  # CSV line 10 (row 5 spans two lines): empty text
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["body", "topic"])
        writer.writeheader()
        writer.writerows(rows)
    config = DataConfig(name="text_csv", path=str(path), text_column="body", label_column="topic",
                        validation_split=0.2, test_split=0.2)
    splits = datasets.load(config, {"vocab_size": 30, "sequence_length": 6})
    assert splits.labels == ["food", "music", "sport"]
    assert splits.data_report["unreadable"] == 1
    assert splits.data_report["unreadable_files"][0] == {"path": f"{path}:10", "reason": "empty text"}
    assert len(splits.x_train) + len(splits.x_val) + len(splits.x_test) == 60
    # Token ids are the tokenizer's, from the training rows' vocabulary, stored in the metadata.
    tokenizer = Tokenizer.from_config(splits.preprocessing)
    usable = [r for r in rows if r["body"].strip()]
    x, y = next(iter(splits.x_train.dataset(1000)))
    expected = tokenizer.encode([usable[i]["body"] for i in splits.x_train.keys])
    np.testing.assert_array_equal(x.numpy(), expected)
    assert [splits.labels[c] for c in y.numpy()] == [usable[i]["topic"] for i in splits.x_train.keys]
    assert splits.preprocessing["kind"] == "tokens" and "goal" in splits.preprocessing["vocabulary"]
    assert len(list((tmp_path / "cache" / "text_csv").glob("reviews-*.npy"))) == 1


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, "<i2").tobytes())


def test_audio_folder_log_mel_front_end(tmp_path):
    import tensorflow as tf

    from tfsparse import datasets
    from tfsparse.datasets import features
    from tfsparse.training.input_pipeline import batches

    root = tmp_path / "keywords"
    t = np.arange(16000) / 16000
    clips = {}
    for k, word in enumerate(["go", "stop"]):
        (root / word).mkdir(parents=True)
        for i in range(6):
            n = 12000 if i % 2 else 16000  # short clips are zero-padded to 1 s
            clip = (8000 * np.sin(2 * np.pi * (300 + 500 * k + 20 * i) * t[:n])).astype(np.int16)
            clips[str(root / word / f"{i}.wav")] = clip
            write_wav(root / word / f"{i}.wav", clip)
    write_wav(root / "go" / "stereo.wav", np.repeat(clips[str(root / "go" / "0.wav")], 2), channels=2)
    write_wav(root / "stop" / "phone.wav", np.zeros(8000, np.int16), rate=8000)
    splits = datasets.load(DataConfig(name="audio_folder", path=str(root), validation_split=0.0, test_split=0.25), {})
    assert splits.labels == ["go", "stop"]
    report = splits.data_report
    assert report["unreadable"] == 1 and report["unreadable_files"][0]["path"].endswith("phone.wav")
    assert "sample rate 8000" in report["unreadable_files"][0]["reason"]
    x = np.asarray(splits.x_test)
    assert x.shape == (4, 49, 40, 1)  # round(7 * 0.25) go + round(6 * 0.25) stop
    for key, features_of_clip in zip(splits.x_test.keys, x):
        if key in clips:
            audio = np.zeros(16000, np.float32)
            audio[:len(clips[key])] = clips[key] / 32768.0
            np.testing.assert_allclose(features_of_clip[..., 0], features.log_mel(audio), rtol=1e-5, atol=1e-5)
    pre = splits.preprocessing
    assert pre["kind"] == "log_mel" and pre["sample_rate"] == 16000 and pre["num_mel_bins"] == 40
    # The trainer's batches standardise them as the metadata says.
    xb, _ = next(iter(batches(splits.x_train, splits.y_train, 4, pre)))
    assert xb.dtype == tf.float32 and abs(float(tf.reduce_mean(xb))) < 1.0


@pytest.mark.parametrize("case", ["no_images", "empty_class", "all_corrupt", "num_classes", "split_classes",
                                  "npz_class"])
def test_bad_input_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    root = tmp_path / "data"
    data, extra = f'name = "image_folder"\npath = "{root}"', []
    if case == "no_images":
        root.mkdir()
        (root / "readme.txt").write_text("a folder without class folders")
        expected = f"{root}: no images (expected one sub-folder per class"
    elif case == "empty_class":
        write_pngs(root, 3)
        (root / "zebra").mkdir()
        expected = f"{root / 'zebra'}: empty class folder"
    elif case == "all_corrupt":
        for name in CLASSES:
            (root / name).mkdir(parents=True)
            (root / name / "x.png").write_bytes(b"garbage")
        expected = f"{root}: none of the 3 images can be read"
    elif case == "num_classes":
        write_pngs(root, 10)
        extra = ["--set", "model.num_classes=5"]
        expected = "model.num_classes = 5, but the data has 3 classes (blue, green, red)"
    elif case == "split_classes":
        write_pngs(root / "train", 3)
        write_pngs(root / "val", 3)
        (root / "val" / "green").rename(root / "val" / "grey")
        expected = f"{root / 'val'}: its classes differ from {root / 'train'}'s (3 vs 3 classes; not in both: green, grey)"
    else:
        path = tmp_path / "d.npz"
        np.savez(path, x_train=np.zeros((4, 8), np.float32), y_train=np.array([0, 1, 2, 3]),
                 x_test=np.zeros((2, 8), np.float32), y_test=np.array([0, 1]), class_names=np.array(["a", "b", "c"]))
        data = f'name = "arrays"\npath = "{path}"'
        expected = f"{path}: y_train has class 3, but class_names lists 3 classes"
    recipe = tmp_path / "bad.toml"
    recipe.write_text(recipe_text(data))
    out = tmp_path / "run"
    capsys.readouterr()
    assert train_cli(recipe, "--out", out, "--quiet", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err, err
    assert not out.exists()


def test_bad_input_from_the_command_line(tmp_path):
    """The real command: one line, exit 2, no traceback, no run folder."""
    root = tmp_path / "data"
    write_pngs(root, 2)
    (root / "zebra").mkdir()
    recipe = tmp_path / "bad.toml"
    recipe.write_text(recipe_text(f'name = "image_folder"\npath = "{root}"'))
    result = subprocess.run([sys.executable, "-m", "tfsparse.train", str(recipe), "--out", str(tmp_path / "run")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == f"tfsparse.train: error: {root / 'zebra'}: empty class folder (no jpg/jpeg/png/bmp/gif files)"
    assert not (tmp_path / "run").exists()


def test_data_config_round_trips_and_rejects_bad_keys():
    config = DataConfig(name="image_folder", path="/data", image_size=[32, 48], augment=["flip"], cache=True,
                        validation_split=0.2, pixel_scale=1.0, pixel_offset=0.0)
    assert DataConfig.from_config(config.get_config()) == config
    assert "path" not in DataConfig().get_config()  # built-in sets round-trip unchanged
    for bad, words in [({"name": "fashion_mnist", "path": "x"}, "data.path applies to"),
                       ({"name": "arrays"}, "data.path must name"),
                       ({"name": "arrays", "path": "a", "augment": ["flip"]}, "data.augment does not apply"),
                       ({"name": "image_folder", "path": "a", "image_size": 4}, "data.image_size must be"),
                       ({"name": "image_folder", "path": "a", "pixel_scale": 0}, "data.pixel_scale must be"),
                       ({"name": "text_csv", "path": "a", "pixel_offset": 1.0}, "data.pixel_offset does not apply"),
                       ({"name": "image_folder", "path": "a", "validation_split": 0.6, "test_split": 0.5},
                        "must be < 1")]:
        with pytest.raises(ValueError, match=words):
            DataConfig.from_config(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cached_examples(prefix: Path, size: int = 24) -> list:
    """The (image, label) pairs a tf.data cache file holds: an empty upstream of the same element
    spec replays a finished cache file (tf.data reads the file when it is complete)."""
    import tensorflow as tf

    empty = tf.data.Dataset.from_tensors((tf.zeros((size, size, 3), tf.uint8), tf.zeros((), tf.int32))).take(0)
    return list(empty.cache(str(prefix)).as_numpy_iterator())


def start_workers(*args) -> list[str]:
    """`tfsparse.train ARGS --strategy multi-worker` in two worker processes on 127.0.0.1 (fresh
    ports); their stdout, after both exited 0."""
    import os

    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                      "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, "-m", "tfsparse.train", *map(str, args),
                                       "--strategy", "multi-worker"],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    logs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, stdout[-2000:] + stderr[-2000:]
        logs.append(stdout)
    return logs


def test_multi_worker_training_on_streamed_data(images, tmp_path):
    """Two worker processes (TF_CONFIG, 127.0.0.1): both run every step of every epoch on their
    shard; the chief writes one run folder with the target sparsity, the other worker nothing.
    Each worker decodes only its share of the files: the decoded images each one cached are
    disjoint and together are the training split. Then `--resume` continues both workers from
    the chief's pruning checkpoint of epoch 1 (the run folder as a kill after that epoch leaves it)."""
    recipe = tmp_path / "mw.toml"
    cache = tmp_path / "cache"
    # No validation split: one evaluation fewer to trace under the strategy (the test is about steps).
    recipe.write_text(recipe_text(f'name = "image_folder"\npath = "{images}"\nvalidation_split = 0.0\n'
                                  f'cache = "{cache}"').replace("dense_epochs = 2\nepochs = 2",
                                                                "dense_epochs = 1\nepochs = 2"))
    out = tmp_path / "run"
    # --epochs 1: one pruning epoch of the recipe's 2 now, the second one after --resume below.
    logs = start_workers(recipe, "--out", out, "--max-train-examples", 128, "--epochs", 1)
    for index, log in enumerate(logs):  # each worker trained both phases, on its half of the files
        assert "[dense] epoch 1/1" in log and "[pruning] epoch 1/1" in log and "sparsity 80.0%" in log
        assert f"worker {index + 1} of 2 reads only its share: 64 of 128 train" in log, log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["strategy"] == "CollectiveAllReduceStrategy"
    assert abs(metrics["overall_sparsity"] - 0.8) < 0.01 and metrics["train_examples"] == 128
    assert metrics["data"]["worker_shares"]["train"] == [64, 64]
    assert sorted(p.name for p in out.iterdir()) == sorted(["checkpoints", "config.toml", "dense.keras", "logs",
                                                            "metrics.json", "sparse.keras", "state.json"])
    # What each worker decoded (its cache file holds the decoded training images): disjoint, and
    # together the 128 training images.
    from tfsparse import datasets

    train = np.asarray(datasets.load_for(load_recipe(recipe), 128).x_train)
    decoded = []
    for index in range(2):  # a training read (keys mixed first) and an evaluation read: the same share
        prefixes = [p.with_suffix("") for p in cache.glob(f"train-*-worker{index}.index")]
        assert prefixes
        decoded.append(set().union(*({image.tobytes() for image, _ in cached_examples(p)} for p in prefixes)))
    assert len(decoded[0]) == len(decoded[1]) == 64 and not decoded[0] & decoded[1]
    assert decoded[0] | decoded[1] == {image.tobytes() for image in train}

    # --resume: the state a kill right after pruning epoch 1 leaves (its checkpoint, the phase open).
    state = json.loads((out / "state.json").read_text())
    state["done"].remove("pruning")
    (out / "state.json").write_text(json.dumps(state))
    logs = start_workers(recipe, "--out", out, "--resume", "--epochs", 2)
    for log in logs:  # both continue at epoch 2 from the chief's checkpoint, in step (same loss)
        assert "[dense] epochs" not in log and "[pruning] epochs 2..2 of 2" in log and "[pruning] epoch 2/2" in log
    assert logs[0].split("[pruning] epoch 2/2")[1].split()[:2] == logs[1].split("[pruning] epoch 2/2")[1].split()[:2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == {"dense": 1, "pruning": 2} and abs(metrics["overall_sparsity"] - 0.8) < 0.01


def test_worker_shares_partition_every_split():
    """Worker numbering as tf.distribute numbers input pipelines (chief first), shares that
    partition a split, and a global batch that cannot be split over the replicas refused."""
    from types import SimpleNamespace

    import tensorflow as tf

    from tfsparse.cli import UserError
    from tfsparse.training import workers

    cluster = tf.train.ClusterSpec({"chief": ["a:1"], "worker": ["b:1", "c:1"]})
    shards = [workers.input_shard(SimpleNamespace(cluster_resolver=tf.distribute.cluster_resolver.SimpleClusterResolver(
        cluster, task_type=task, task_id=i))) for task, i in (("chief", 0), ("worker", 0), ("worker", 1))]
    assert shards == [(3, 0), (3, 1), (3, 2)]
    assert workers.input_shard(tf.distribute.get_strategy()) is None
    parts = [list(tf.data.Dataset.range(100).shard(*shard).as_numpy_iterator()) for shard in shards]
    assert workers.shares(100, shards[0]) == [len(p) for p in parts] == [34, 33, 33]
    assert sorted(np.concatenate(parts)) == list(range(100))
    with pytest.raises(UserError, match="train.batch_size = 30 does not split evenly over 4 replicas"):
        workers.per_replica_batch(SimpleNamespace(num_replicas_in_sync=4), 30)
