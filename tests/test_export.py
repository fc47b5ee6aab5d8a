"""`python -m tfsparse.export` on a tiny trained run: real converter, real LiteRT interpreter."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfsparse.exporting import manifest as manifest_io
from tfsparse.reporting import export_table as report_export
from tfsparse.tflite import metadata as tflite_metadata

ROOT = Path(__file__).parent.parent
VARIANTS = ["fp32", "fp16", "int8-dynamic", "int8"]
ENTRY_FIELDS = {"path", "variant", "dense", "runs", "error", "bytes", "gzip_bytes", "size_ratio_vs_dense",
                "sparse_tensors", "densify_ops", "accuracy", "parity", "xnnpack"}


def export(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "tfsparse.export", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny"
    result = export(tiny_run, "--variants", ",".join(VARIANTS), "--out", out)
    return out, result, json.loads((out / "manifest.json").read_text())


def by_variant(manifest, dense=False):
    return {e["variant"]: e for e in manifest["files"] if e["dense"] == dense}


def test_every_file_is_written_and_described(exported, tiny_run):
    out, result, manifest = exported
    assert [(e["variant"], e["dense"]) for e in manifest["files"]] == [("fp32", True)] + [(v, False) for v in VARIANTS]
    assert set(manifest) >= {"model", "recipe", "created", "keras_accuracy", "sparsity", "files"}
    assert manifest["model"] == "tiny" and manifest["recipe"].endswith("mobilenet_v1.toml")
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert manifest["sparsity"]["overall"] == pytest.approx(metrics["overall_sparsity"], abs=1e-4)
    dense_bytes = by_variant(manifest, dense=True)["fp32"]["bytes"]
    for e in manifest["files"]:
        assert set(e) >= ENTRY_FIELDS, e
        data = (out / e["path"]).read_bytes()
        assert e["bytes"] == len(data) and 0 < e["gzip_bytes"] < len(data)
        assert e["size_ratio_vs_dense"] == pytest.approx(dense_bytes / len(data), rel=1e-3)
    # One progress line per file, each naming it.
    for e in manifest["files"]:
        assert sum(e["path"] in line for line in result.stdout.splitlines()) == 1, result.stdout
    # Atomic writes leave no temporaries behind.
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    # The manifest reader other stages use accepts it and skips the file that does not run.
    assert len(manifest_io.files(out)) == len(VARIANTS) and len(manifest_io.dense_sparse_pairs(out)) == len(VARIANTS) - 1


def test_sparse_files_are_sparse_and_smaller(exported, tiny_run):
    out, _, manifest = exported
    pruned = json.loads((tiny_run / "metrics.json").read_text())["layer_sparsity"]
    dense, sparse = by_variant(manifest, dense=True)["fp32"], by_variant(manifest)
    assert dense["sparse_tensors"] == dense["densify_ops"] == 0 and dense["xnnpack"]["verdict"] == "dense"
    assert sparse["fp32"]["bytes"] < dense["bytes"] and sparse["fp16"]["bytes"] < sparse["fp32"]["bytes"]
    for variant in ("fp32", "fp16"):
        # Each pruned 1x1 kernel stored CSR behind a DENSIFY: what XNNPACK's sparse path needs.
        assert sparse[variant]["sparse_tensors"] == sparse[variant]["densify_ops"] == len(pruned)
        assert sparse[variant]["xnnpack"]["verdict"] == "sparse" and sparse[variant]["xnnpack"]["sparse_clusters"] >= 1
    assert sparse["int8"]["sparse_tensors"] == len(pruned)
    assert sparse["int8"]["xnnpack"]["verdict"] == "dense"  # int8 never takes the sparse path
    assert any("int8" in reason for reason in sparse["int8"]["xnnpack"]["reasons"])


def test_failing_variant_is_recorded_and_exit_status_is_1(exported):
    out, result, manifest = exported
    failed = by_variant(manifest)["int8-dynamic"]
    assert result.returncode == 1, result.stderr[-2000:]
    assert failed["runs"] is False and failed["accuracy"] is None and failed["parity"] is None
    assert "failed to delegate" in failed["error"]
    # Kept for inspection, but out of the folder users ship.
    assert failed["path"].startswith("failed/") and (out / failed["path"]).is_file()
    assert "failed to delegate" in result.stderr and failed["path"] in result.stderr
    assert all(e["runs"] and e["error"] is None for e in manifest["files"] if e is not failed)


def test_accuracy_and_parity_through_litert(exported):
    _, _, manifest = exported
    keras = manifest["keras_accuracy"]
    files = {(e["variant"], e["dense"]): e for e in manifest["files"]}
    assert manifest["test_examples"] == 10000
    for (variant, dense), reference in ((("fp32", True), keras["dense"]), (("fp32", False), keras["sparse"]),
                                        (("fp16", False), keras["sparse"])):
        e = files[variant, dense]
        assert abs(e["accuracy"] - reference) <= 0.005, (variant, dense, e["accuracy"], reference)
        assert e["parity"]["top1_agreement"] >= 0.99 and e["parity"]["max_abs_diff"] < 1e-2
    assert files["fp32", False]["parity"]["max_abs_diff"] < 1e-4  # same arithmetic up to float rounding
    int8 = files["int8", False]
    assert 0 <= int8["accuracy"] <= 1 and 0 < int8["parity"]["max_abs_diff"] < 0.5


def test_metadata_and_signature_are_usable_by_an_app(exported, tiny_run):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tfsparse.datasets import fashion_mnist

    out, _, manifest = exported
    entry = by_variant(manifest)["fp32"]
    info = tflite_metadata.read((out / entry["path"]).read_bytes())
    assert info["labels"] == fashion_mnist.LABELS and info["variant"] == "fp32" and info["dense"] is False
    assert info["recipe"] == "tiny" and info["tfsparse_version"]
    assert info["input"]["shape"] == [1, 32, 32, 3] and info["input"]["layout"] == "NHWC"
    assert info["input"]["normalisation"]["scale"] == pytest.approx(1 / 255)
    assert info["sparsity"] == manifest["sparsity"]

    interpreter = Interpreter(model_path=str(out / entry["path"]))
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["probabilities"]}}
    runner = interpreter.get_signature_runner()
    pixels = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3)).astype(np.float32)
    image = pixels * info["input"]["normalisation"]["scale"] + info["input"]["normalisation"]["offset"]
    probabilities = runner(image=image.astype(np.float32))["probabilities"]
    keras = tf.keras.models.load_model(tiny_run / "sparse.keras", compile=False)(image).numpy()
    assert probabilities.shape == (1, len(info["labels"]))
    np.testing.assert_allclose(probabilities, keras, atol=1e-5)


def test_table_lists_every_file(exported, capsys):
    out, _, manifest = exported
    assert report_export.main([str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| tiny |")]
    assert len(rows) == len(manifest["files"])
    assert "fails to run" in rows[VARIANTS.index("int8-dynamic") + 1]
    assert f"{by_variant(manifest)['fp32']['size_ratio_vs_dense']:.2f}x" in rows[1]


def test_bare_model_with_recipe_and_per_tensor_int8(tiny_run, tmp_path):
    """A bare .keras is exported against its recipe; its baseline is itself, converted dense."""
    from ai_edge_litert import schema_py_generated as schema

    model = tmp_path / "mine.keras"
    shutil.copy(tiny_run / "sparse.keras", model)
    result = export(model, "--recipe", tiny_run / "config.toml", "--variants", "fp32,int8",
                    "--int8-weights", "per-tensor", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = manifest_io.load(tmp_path / "out")
    dense, sparse, int8 = manifest["files"]
    assert manifest["model"] == "mine" and manifest["int8_weights"] == "per-tensor"
    assert dense["dense"] and not sparse["dense"] and sparse["size_ratio_vs_dense"] > 1
    assert dense["accuracy"] == pytest.approx(sparse["accuracy"], abs=1e-3)  # same weights
    data = (tmp_path / "out" / int8["path"]).read_bytes()
    assert tflite_metadata.read(data)["int8_weights"] == "per-tensor"
    graph = schema.ModelT.InitFromPackedBuf(bytearray(data), 0).subgraphs[0]
    weights = [t for t in graph.tensors if t.type == schema.TensorType.INT8 and len(t.shape) == 4
               and t.quantization is not None and t.quantization.scale is not None]
    assert weights and all(len(t.quantization.scale) == 1 for t in weights)  # one scale per tensor


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such run folder"),
    ("no_sparse", "no sparse.keras"),
    ("unknown_variant", "unknown variant 'int4'"),
    ("bare_without_recipe", "needs --recipe"),
])
def test_bad_input_exits_2_with_one_line(case, expected, tiny_run, tmp_path):
    args = {"missing": [tmp_path / "nope"],
            "no_sparse": [tmp_path],
            "unknown_variant": [tiny_run, "--variants", "fp32,int4"],
            "bare_without_recipe": [tiny_run / "sparse.keras"]}[case]
    result = export(*args, "--out", tmp_path / "out", timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()  # nothing written for bad input
