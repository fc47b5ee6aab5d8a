"""The flatbuffer reader, sparse-tensor decoding, our metadata and the inspector CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `tests.graphs` under any runner

from tests.graphs import build_keras, build_tflite, convert  # noqa: E402
from tfsparse.cli import UserError  # noqa: E402
from tfsparse.tflite import metadata as tflite_metadata  # noqa: E402
from tfsparse.tflite import xnnpack
from tfsparse.tflite.flatbuffer import SparseEncoding, densify, parse  # noqa: E402
from tfsparse.tflite.inspector import block_structure, inspect_bytes, manifest_summary  # noqa: E402


def pointwise_kernels_ohwi(name: str, dtype=np.float32) -> list[np.ndarray]:
    """The Keras 1x1 kernels (H, W, I, O) in TFLite's (O, H, W, I) layout."""
    import tensorflow as tf

    model = build_keras(name)
    return [layer.get_weights()[0].transpose(3, 0, 1, 2).astype(dtype) for layer in model.layers
            if type(layer) is tf.keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1)]


@pytest.mark.parametrize("name, dtype", [("mobilenet", np.float32), ("mobilenet_fp16", np.float16)])
def test_densified_tensors_equal_the_keras_weights(name, dtype):
    sparse = [t for t in parse(build_tflite(name)).main.tensors if t.sparsity is not None]
    kernels = pointwise_kernels_ohwi(name, dtype)
    assert len(sparse) == len(kernels) == 2
    for kernel in kernels:
        matches = [t for t in sparse if t.shape == list(kernel.shape)
                   and np.array_equal(t.dense_values(), kernel)]
        assert len(matches) == 1, f"no sparse tensor decodes to the {kernel.shape} kernel"
        enc = matches[0].sparsity
        assert enc.dim_formats == ["DENSE", "DENSE", "DENSE", "SPARSE_CSR"]
        assert matches[0].values().size == np.count_nonzero(kernel)


def test_block_sparse_fully_connected_decodes_and_is_refused():
    import tensorflow as tf

    # Zeros in aligned 1x4 blocks along the input: the converter keeps FC weights block-sparse
    # (block_map, no DENSIFY), which the XNNPACK delegate does not take.
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((32,))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(8)(inp))
    kernel = model.get_weights()[0]  # (in=32, out=8)
    blocks = np.random.default_rng(0).random((8, 8)) < 0.75  # (out, in/4) blocks to zero
    kernel[np.repeat(blocks, 4, axis=1).T] = 0.0
    model.set_weights([kernel, model.get_weights()[1]])
    report = inspect_bytes(convert(model, "fp32"))
    (tensor,) = [t for t in parse(convert(model, "fp32")).main.tensors if t.sparsity is not None]
    assert tensor.sparsity.block_map == [1]
    assert np.array_equal(tensor.dense_values(), kernel.T)
    (entry,) = report["sparse_tensors"]
    assert entry["block_structure"]["converter_block"] == [1, 4]
    assert report["densify_ops"] == 0
    (node,) = [n for n in xnnpack.build_graph(parse(convert(model, "fp32")).main).nodes
               if n.opcode == "FULLY_CONNECTED"]
    assert "block-sparse weights without DENSIFY" in node.why_not


def test_densify_handles_csr_and_blocks_by_hand():
    dense = np.array([[0, 0, 1, 2], [0, 0, 0, 0], [3, 4, 0, 0]], dtype=np.float32)
    csr = SparseEncoding([0, 1], [], ["DENSE", "SPARSE_CSR"], [3, 0], [None, "uint8"],
                         [None, np.array([0, 2, 2, 4])], [None, np.array([2, 3, 0, 1])])
    assert np.array_equal(densify(np.array([1, 2, 3, 4], np.float32), [3, 4], csr), dense)
    # 1x2 blocks along dimension 1: rows dense, block columns CSR, inside a block dense.
    blocked = SparseEncoding([0, 1, 2], [1], ["DENSE", "SPARSE_CSR", "DENSE"], [3, 0, 2], [None, "uint8", None],
                             [None, np.array([0, 1, 1, 2]), None], [None, np.array([1, 0]), None])
    assert np.array_equal(densify(np.array([1, 2, 3, 4], np.float32), [3, 4], blocked), dense)


@pytest.mark.parametrize("segments, values", [([0, 2, 2, 9], 4), ([0, 3, 2, 4], 4), ([0, 2, 2, 4], 5)])
def test_densify_rejects_inconsistent_encodings(segments, values):
    enc = SparseEncoding([0, 1], [], ["DENSE", "SPARSE_CSR"], [3, 0], [None, "uint8"],
                         [None, np.array(segments)], [None, np.array([2, 3, 0, 1])])
    with pytest.raises(UserError):
        densify(np.ones(values, np.float32), [3, 4], enc)


def test_densify_refuses_a_corrupt_dense_size_before_building_it():
    """Found by `python -m tfsparse.fuzz` (seed 0, case 4787): a DENSE level size mutated to
    50,331,648 passed the 2**26 cap, and densify built arrays that large (12 s, GBs) before the
    next level failed. Four stored values and a 4-entry segment array cannot need more paths."""
    enc = SparseEncoding([0, 1], [], ["DENSE", "SPARSE_CSR"], [3 << 24, 0], [None, "uint8"],
                         [None, np.array([0, 2, 2, 4])], [None, np.array([2, 3, 0, 1])])
    with pytest.raises(UserError, match="dense level 0 of size 50331648 is unusable"):
        densify(np.ones(4, np.float32), [3, 4], enc)


def test_block_structure_finds_blocks_and_n_m():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 1, 1, 8)).astype(np.float32)  # OHWI
    assert block_structure(w) == {"output_channel_block": 1, "n_m": None}
    blocks = rng.random((4, 8)) < 0.8  # zero groups of 4 output channels per input channel
    w4 = w.copy()
    w4[np.repeat(blocks, 4, axis=0).reshape(16, 1, 1, 8)] = 0
    assert block_structure(w4)["output_channel_block"] == 4
    w24 = w.copy().reshape(16, 2, 4)
    for row in w24.reshape(-1, 4):
        row[rng.permutation(4)[:2]] = 0
    assert block_structure(w24.reshape(16, 1, 1, 8))["n_m"] == "2:4"
    assert block_structure(w24.reshape(16, 1, 1, 8))["output_channel_block"] == 1


def test_inspect_report_shape_and_manifest_summary():
    report = inspect_bytes(build_tflite("mobilenet"))
    assert {"ops", "sparse_tensors", "metadata", "xnnpack"} <= set(report)
    assert {"target", "sparse_clusters", "clusters", "warnings"} <= set(report["xnnpack"])
    assert {"nodes", "zero_fraction", "sparse", "reasons"} <= set(report["xnnpack"]["clusters"][0])
    assert report["gzip_bytes"] < report["bytes"]
    json.dumps(report)  # the CLI's --json must not meet numpy values
    for entry in report["sparse_tensors"]:
        assert entry["index_width"] == ["uint8"] and entry["zero_fraction"] == pytest.approx(0.9, abs=0.01)
    summary = manifest_summary(report)
    assert summary["sparse_tensors"] == 2 and summary["densify_ops"] == 2
    assert summary["xnnpack"]["verdict"] == "sparse" and summary["xnnpack"]["sparse_clusters"] == 1
    assert manifest_summary(inspect_bytes(build_tflite("same_stride2")))["xnnpack"]["verdict"] == "dense"


def test_metadata_round_trip_keeps_the_model_running():
    from ai_edge_litert.interpreter import Interpreter

    data = build_tflite("squeeze_excite")
    info = {"labels": ["cat", "dog"], "input": {"mean": [127.5] * 3, "std": [127.5] * 3,
                                                "shape": [32, 32, 3], "layout": "NHWC"},
            "sparsity": {"pointwise": 0.9}, "recipe": "models/test.toml"}
    assert tflite_metadata.read(data) is None
    embedded = tflite_metadata.embed(data, info)
    assert tflite_metadata.read(embedded) == info
    assert inspect_bytes(embedded)["metadata"]["tfsparse"] == info
    assert parse(embedded).signatures == parse(data).signatures
    again = tflite_metadata.embed(embedded, {"recipe": "other"})  # replaces, never duplicates
    assert tflite_metadata.read(again) == {"recipe": "other"}
    assert list(parse(again).metadata).count("tfsparse") == 1

    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    outputs = []
    for model in (data, embedded):
        runner = Interpreter(model_content=model).get_signature_runner()
        (key,) = runner.get_input_details()
        outputs.append(next(iter(runner(**{key: x}).values())))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_metadata_embed_rejects_garbage():
    with pytest.raises(UserError):
        tflite_metadata.embed(b"not a model at all", {"a": 1})


def test_inspector_does_not_load_tensorflow():
    code = ("import sys, tfsparse.tflite.inspector, tfsparse.tflite.metadata; "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfsparse.inspect", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_a_report_and_json(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(build_tflite("mobilenet"))
    text = run_cli(str(path))
    assert text.returncode == 0, text.stderr
    assert "XNNPACK (arm64): SPARSE" in text.stdout and "SPARSE_CSR" in text.stdout
    js = run_cli(str(path), "--json", "--target", "x86-avx")
    assert js.returncode == 0, js.stderr
    report = json.loads(js.stdout)
    assert report["xnnpack"]["target"] == "x86-avx" and report["xnnpack"]["sparse_clusters"] == 0


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "truncated", "text", "corrupt"])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, case):
    data = build_tflite("mobilenet")
    path = tmp_path / f"{case}.tflite"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif case == "text":
        path.write_text("hello, I am not a flatbuffer\n" * 10)
    elif case == "corrupt":
        path.write_bytes(data[:8] + bytes(range(256)) * (len(data) // 256))
    result = run_cli(str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_file_without_signatures_says_none():
    from tfsparse.tflite.inspector import format_report

    report = {"bytes": 10, "gzip_bytes": 10, "ops": [], "sparse_tensors": [], "densify_ops": 0,
              "tensors": {"count": 0, "constant": 0, "constant_bytes": 0, "by_dtype": {}, "inputs": [], "outputs": []},
              "signatures": [], "metadata": {},
              "xnnpack": {"target": "arm64", "sparse_clusters": 0, "clusters": [], "warnings": []}}
    text = format_report(report).splitlines()
    assert text[text.index("Signatures:") + 1] == "  none"
