"""Pruned lookup tables (Embedding -> GATHER) stored sparse: smaller files, same outputs.

The converter's own sparsity pass leaves GATHER tables dense; `tfsparse.exporting.sparse_lookup`
re-encodes them behind DENSIFY. Checked with the real converter and LiteRT, on the host (with
and without the XNNPACK delegate) and on the emulated arm64 runtime, and read back with the
inspector's own flatbuffer parser (a decoder independent of LiteRT's).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfsparse  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from tests.graphs import convert
from tfsparse.benchmarking import bench
from tfsparse.exporting.sparse_lookup import sparsify_lookup_tables
from tfsparse.tflite import flatbuffer

VOCAB, DIM, LENGTH = 3000, 48, 24


def _text_model(zero_fraction: float):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    tokens = tf.keras.Input((LENGTH,), dtype="int32", name="tokens")
    x = layers.Embedding(VOCAB, DIM, name="embedding")(tokens)
    x = layers.GlobalAveragePooling1D()(x)
    model = tf.keras.Model(tokens, layers.Dense(5, name="logits")(x))
    table = model.get_layer("embedding").get_weights()[0]
    table[np.random.default_rng(0).random(table.shape) < zero_fraction] = 0.0
    model.get_layer("embedding").set_weights([table])
    return model, table


TOKENS = np.random.default_rng(1).integers(0, VOCAB, (1, LENGTH)).astype(np.int32)


def _run(data: bytes, delegate: bool = True) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_content=data, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], TOKENS)
    outputs = []
    for _ in range(2):  # DENSIFY fills the table on the first call only: the second must agree
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    np.testing.assert_array_equal(outputs[0], outputs[1])
    return outputs[0]


@pytest.fixture(scope="module")
def pruned():
    model, table = _text_model(0.9)
    return {variant: convert(model, variant) for variant in ("fp32", "fp16")}, table


@pytest.mark.parametrize("variant", ["fp32", "fp16"])
def test_pruned_table_is_stored_sparse_and_outputs_do_not_change(pruned, variant):
    files, table = pruned
    before = files[variant]
    after, tables = sparsify_lookup_tables(before)
    (entry,) = tables
    assert entry["shape"] == [VOCAB, DIM] and entry["zero_fraction"] == pytest.approx(np.mean(table == 0), abs=1e-4)
    # 10% of the values kept (+ a byte of column index each, + row offsets): well under a third.
    assert entry["sparse_bytes"] < entry["dense_bytes"] / 3
    assert len(after) < len(before) - (entry["dense_bytes"] - entry["sparse_bytes"]) * 0.95

    reference = _run(before)
    np.testing.assert_allclose(_run(after), reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_run(after, delegate=False), reference, rtol=0, atol=1e-6)

    # The inspector's parser decodes the same table from the new encoding.
    graph = flatbuffer.parse(after).main
    sparse = [t for t in graph.tensors if t.sparsity is not None]
    assert len(sparse) == 1 and sparse[0].shape == [VOCAB, DIM]
    stored = table.astype(np.float16) if variant == "fp16" else table
    np.testing.assert_array_equal(sparse[0].dense_values(), stored)
    assert [op.opcode for op in graph.operators].count("DENSIFY") == 1


def test_a_table_under_the_threshold_stays_dense():
    model, _ = _text_model(0.1)
    before = convert(model, "fp32")
    after, tables = sparsify_lookup_tables(before)
    assert after == before
    assert tables[0]["sparse_bytes"] is None and tables[0]["zero_fraction"] < 0.3


def test_runs_on_the_emulated_arm64_runtime(pruned, tmp_path):
    """The aarch64 LiteRT (XNNPACK on) gives the host's outputs for both encodings."""
    paths = []
    for variant, data in pruned[0].items():
        path = tmp_path / f"text.sparse.{variant}.tflite"
        path.write_bytes(sparsify_lookup_tables(data)[0])
        paths.append(str(path))
    out = tmp_path / "bench.json"
    assert bench.main(["--target", "arm64-emu", "--litert-version", "2.3.0", "--runs", "1", "--warmup", "0",
                       "--json", str(out), *paths]) == 0
    results = json.loads(out.read_text())["results"]
    # Both files, then their dense twins (the table stored dense again: no DENSIFY), all run.
    assert [r.get("twin_of") for r in results] == [None, None, *paths]
    assert [r["error"] for r in results] == [None] * 4
    assert all(r["outputs_match_host"] for r in results), results
