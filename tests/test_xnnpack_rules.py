"""XNNPACK sparse-path predictions on constructed graphs converted by the real TFLite converter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.graphs` under any runner

from tests.graphs import GRAPHS, build_tflite, pointwise_tflite  # noqa: E402
from tfsparse.tflite import xnnpack  # noqa: E402
from tfsparse.tflite.flatbuffer import parse  # noqa: E402


def analysis(name: str, target: str = "arm64") -> dict:
    return xnnpack.analyze(parse(build_tflite(name)), target)


def ops_of(name: str) -> dict[int, str]:
    return {op.index: op.opcode for op in parse(build_tflite(name)).main.operators}


def sparse_cluster(name: str) -> dict:
    clusters = [c for c in analysis(name)["clusters"] if c["sparse"]]
    assert len(clusters) == 1, clusters
    return clusters[0]


def all_reasons(result: dict) -> str:
    return "\n".join(result["reasons"] + result["warnings"] + [r for c in result["clusters"] for r in c["reasons"]])


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_verdict_matches_expectation(name):
    result = analysis(name)
    verdict = "sparse" if result["sparse_clusters"] else "dense"
    assert verdict == GRAPHS[name].verdict, all_reasons(result)


@pytest.mark.parametrize("name", ["mobilenet", "squeeze_excite"])
def test_x86_with_avx_never_runs_sparse(name):
    result = analysis(name, "x86-avx")
    assert result["sparse_clusters"] == 0
    assert xnnpack.X86_REASON in result["reasons"]
    assert all(xnnpack.X86_REASON in c["reasons"] for c in result["clusters"])


def test_eligible_mobilenet_cluster_spans_stem_to_pool():
    ops = ops_of("mobilenet")
    cluster = sparse_cluster("mobilenet")
    names = [ops[n["op"]] for n in cluster["nodes"]]
    # PAD folds into the stem / stride-2 depthwise; DENSIFY vanishes; the MEAN ends the cluster.
    assert names[0] == "CONV_2D" and names[-1] == "MEAN"
    assert "PAD" not in names and "DENSIFY" not in names and "FULLY_CONNECTED" not in names
    assert names.count("DEPTHWISE_CONV_2D") == 2
    assert cluster["zero_fraction"] == pytest.approx(0.9, abs=0.01)


def test_same_padding_at_stride_2_is_named():
    text = all_reasons(analysis("same_stride2"))
    assert "stride-2 depthwise" in text and "uses SAME padding" in text
    assert "stride-2 3x3 CONV_2D #0 uses SAME padding" in text


def test_below_threshold_states_the_fraction():
    result = analysis("below_threshold")
    assert "1x1 weights 50% zero, needs more than 66.7%" in all_reasons(result)
    assert any(w.startswith("model not eligible") for w in result["warnings"])
    assert parse(build_tflite("below_threshold")).main.operators  # encoded sparse nonetheless:
    assert any(t.sparsity is not None for t in parse(build_tflite("below_threshold")).main.tensors)


def test_mean_keepdims_head_is_pulled_into_the_cluster():
    ops = ops_of("mean_keepdims_head")
    result = analysis("mean_keepdims_head")
    (cluster,) = [c for c in result["clusters"] if any(ops[n["op"]] == "MEAN" for n in c["nodes"])]
    head = max(n["op"] for n in cluster["nodes"])
    assert ops[head] == "CONV_2D"  # the 1x1 head after MEAN(keep_dims) is inside
    assert cluster["zero_fraction"] == pytest.approx(0.6, abs=0.01)
    assert "1x1 weights 60% zero, needs more than 66.7%" in cluster["reasons"]
    assert any(w.startswith("dense head pulled into the cluster") for w in result["warnings"])


def test_gap_then_dense_keeps_the_dense_head_out():
    ops = ops_of("gap_dense")
    cluster = sparse_cluster("gap_dense")
    assert not any(ops[n["op"]] == "FULLY_CONNECTED" for n in cluster["nodes"])
    assert cluster["zero_fraction"] == pytest.approx(0.9, abs=0.01)  # the dense 32x64 head would drop it to 21%
    assert not any("dense head" in w for w in analysis("gap_dense")["warnings"])


def test_squeeze_excite_stays_channel_first():
    ops = ops_of("squeeze_excite")
    names = [ops[n["op"]] for n in sparse_cluster("squeeze_excite")["nodes"]]
    assert {"MUL", "LOGISTIC"} <= set(names)
    assert names.count("MEAN") == 2 and names.count("CONV_2D") == 5


def test_int8_disables_the_sparse_path():
    result = analysis("int8")
    assert xnnpack.INT8_REASON in result["reasons"]
    assert any("int8 tensors disable" in w for w in result["warnings"])
    assert any(t.sparsity is not None for t in parse(build_tflite("int8")).main.tensors)


def test_dynamic_range_sparse_is_flagged_and_really_fails_to_load():
    from ai_edge_litert.interpreter import Interpreter

    result = analysis("int8_dynamic")
    assert any(w.startswith("int8 dynamic-range weights stored sparse") for w in result["warnings"])
    assert not any("dynamic-range" in w for w in analysis("int8")["warnings"])  # full-integer loads
    for name, spec in GRAPHS.items():  # every graph on the host, as the benchmark will expect
        interpreter = Interpreter(model_content=build_tflite(name))
        if spec.loads:
            interpreter.allocate_tensors()
            interpreter.invoke()
        else:
            with pytest.raises(RuntimeError, match="failed to delegate CONV_2D"):
                interpreter.allocate_tensors()


def test_unpruned_model_warns_no_sparse_tensor():
    result = analysis("unpruned")
    assert any(w.startswith("no sparse tensor in the file") for w in result["warnings"])
    assert xnnpack.NO_DENSIFY_REASON in result["reasons"]


def test_known_bug_a_constant_second_operand():
    result = analysis("const_second_mul")
    assert any(w.startswith("known XNNPACK bug (a)") and "MUL" in w for w in result["warnings"])


def test_known_bug_b_cluster_without_end_node():
    result = analysis("truncated_cluster")
    assert result["sparse_clusters"] == 2
    (warning,) = [w for w in result["warnings"] if w.startswith("known XNNPACK bug (b)")]
    assert "WRONG results" in warning


@pytest.mark.parametrize("zeros, sparse", [(64, False), (65, True)])
def test_two_thirds_rule_is_strict(zeros, sparse):
    # 64 of 96 is exactly 2/3: XNNPACK needs zeros * 3 > params * 2.
    result = xnnpack.analyze(parse(pointwise_tflite(zeros)))
    (cluster,) = result["clusters"]
    assert (cluster["zeros"], cluster["params"]) == (zeros, 96)
    assert cluster["sparse"] is sparse
