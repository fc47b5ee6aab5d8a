"""tfsparse.tflite.twin: the dense twin of a sparse .tflite (same weights, zeros included, stored dense).

Checked on every graph of tests/graphs.py (fp32, fp16, int8, int8 dynamic-range, two
inputs/outputs, several clusters) and on a sparse lookup table (our own DENSIFY -> GATHER):
no sparse tensor and no DENSIFY left, the inspector predicts XNNPACK dense, and the outputs
equal the sparse file's exactly (LiteRT on the host, where XNNPACK runs both dense).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tfsparse  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from tests.graphs import GRAPHS, build_tflite, convert
from tfsparse.tflite import flatbuffer
from tfsparse.tflite.inspector import inspect_bytes
from tfsparse.tflite.twin import dense_twin


def outputs(data: bytes, seed: int = 0) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=data).get_signature_runner()
    rng = np.random.default_rng(seed)
    feed = {}
    for name, d in runner.get_input_details().items():
        if np.issubdtype(d["dtype"], np.integer):
            feed[name] = rng.integers(0, 100, d["shape"]).astype(d["dtype"])
        else:
            feed[name] = rng.uniform(0, 1, d["shape"]).astype(d["dtype"])
    return runner(**feed)


def densify_ops(data: bytes) -> int:
    return sum(op.builtin_code == flatbuffer.DENSIFY for sg in flatbuffer.parse(data).subgraphs for op in sg.operators)


@pytest.mark.parametrize("name", GRAPHS)
def test_twin_stores_the_same_weights_dense(name):
    sparse = build_tflite(name)
    twin = dense_twin(sparse)
    report = inspect_bytes(twin)
    if name != "unpruned":
        assert inspect_bytes(sparse)["sparse_tensors"], "the graph must have something to densify"
    assert not report["sparse_tensors"] and densify_ops(twin) == 0
    assert report["xnnpack"]["sparse_clusters"] == 0
    # Every constant of the sparse file (densified) is in the twin, by name, value for value.
    sparse_consts = {t.name: t.dense_values() for t in flatbuffer.parse(sparse).main.tensors if t.is_constant}
    twin_consts = {t.name: t.dense_values() for t in flatbuffer.parse(twin).main.tensors if t.is_constant}
    assert sparse_consts.keys() == twin_consts.keys()
    for key, values in sparse_consts.items():
        np.testing.assert_array_equal(twin_consts[key], values, err_msg=key)
    if GRAPHS[name].loads:
        got, want = outputs(twin), outputs(sparse)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: output {key}")
    else:  # int8 dynamic-range stored sparse fails to load on LiteRT 2.3.0; its twin loads
        assert outputs(twin)


def test_a_file_without_sparse_tensors_comes_back_unchanged():
    data = build_tflite("unpruned")
    assert dense_twin(data) == data


def test_twin_if_sparse_reads_the_file_once(monkeypatch):
    from tfsparse.tflite import twin

    sparse, dense = build_tflite(next(n for n in GRAPHS if n != "unpruned")), build_tflite("unpruned")
    expected = dense_twin(sparse)
    calls = []
    real_parse = flatbuffer.parse
    monkeypatch.setattr(flatbuffer, "parse", lambda data: calls.append(len(data)) or real_parse(data))
    assert twin.twin_if_sparse(sparse) == expected and calls == [len(sparse)]
    calls.clear()
    assert twin.twin_if_sparse(dense) is None and calls == [len(dense)]


def test_twin_of_a_sparse_lookup_table():
    import tensorflow as tf

    from tfsparse.exporting.sparse_lookup import sparsify_lookup_tables

    tf.keras.utils.set_random_seed(0)
    tokens = tf.keras.Input((8,), dtype="int32")
    embedding = tf.keras.layers.Embedding(200, 16)
    model = tf.keras.Model(tokens, tf.keras.layers.GlobalAveragePooling1D()(embedding(tokens)))
    table = embedding.get_weights()[0]
    table[np.random.default_rng(0).random(table.shape) < 0.9] = 0.0
    embedding.set_weights([table])
    sparse, _ = sparsify_lookup_tables(convert(model, "fp32"))
    assert densify_ops(sparse) == 1
    twin = dense_twin(sparse)
    assert densify_ops(twin) == 0 and not inspect_bytes(twin)["sparse_tensors"]
    got, want = outputs(twin), outputs(sparse)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfsparse.twin", *map(str, args)], capture_output=True, text=True)


def test_command_writes_the_twin_and_refuses_bad_input(tmp_path):
    sparse = tmp_path / "m.sparse.fp32.tflite"
    sparse.write_bytes(build_tflite("mobilenet"))
    out = tmp_path / "twin.tflite"
    proc = run_cli(sparse, out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == dense_twin(sparse.read_bytes())

    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    for args, message in [((garbage, tmp_path / "g.tflite"), "TFL3"),
                          ((tmp_path / "missing.tflite", tmp_path / "m.tflite"), "missing.tflite"),
                          ((sparse, sparse), "must not overwrite")]:
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.tflite", "m.sparse.fp32.tflite", "twin.tflite"]
