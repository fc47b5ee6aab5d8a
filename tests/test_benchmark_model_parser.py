"""The benchmark_model output parser, on text in each format benchmark_model prints.

Samples follow ../shared/docs/benchmark-model.md (LiteRT tflite/tools/benchmark and
profile_summary_formatter). Pure functions: no device, no TensorFlow.
"""

import pytest

from tfsparse.benchmarking import benchmark_model as bm

RUN = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/tfsparse/m00_net.tflite]
INFO: Initialized session in 12.345ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=23 first=30100 curr=24001 min=23500 max=30100 avg=24500.5 std=900 p5=23600 median=24000 p95=26000

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=20345 curr=19876 min=19500 max=21034 avg=19987.2 std=312 p5=19540 median=19950 p95=20650

INFO: Inference timings in us: Init: 12345, First inference: 25000, Warmup (avg): 24000.5, Inference (avg): 19987.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the
actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.5 overall=8.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.5
"""

HEAD = "\t[node type]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]"


def profile(rows: list[tuple[str, float]]) -> str:
    body = [f"\t{t:>30}\t{ms * 1.1:14.3f}\t{ms:14.3f}\t{25.0:9.3f}%\t{50.0:9.3f}%\t{0:10.3f}\t{1:8d}\t[Delegate/{t}:{i}]"
            for i, (t, ms) in enumerate(rows)]
    return "\n".join([
        "Profiling Info for Benchmark Initialization:",
        "============================== Run Order ==============================", HEAD,
        "\t ModifyGraphWithDelegate\t3.000\t3.000\t90.000%\t90.000%\t1024.000\t1\tModifyGraphWithDelegate/0",
        "", "Operator-wise Profiling Info for Regular Benchmark Runs:",
        "============================== Run Order ==============================", HEAD, *body, "",
        "============================== Top by Computation Time ==============================", HEAD, *body, "",
        "Number of nodes executed: %d" % len(rows),
        "============================== Summary by node type ==============================",
        "\t[Node type]\t[count]\t[avg ms]\t[avg %]\t[cdf %]\t[mem KB]\t[times called]",
        *[f"\t{t}\t1\t{ms:.3f}\t25.000%\t50.000%\t0.000\t1" for t, ms in rows], "",
        "Timings (microseconds): count=50 first=999 curr=998 min=990 max=999 avg=995 std=2",
        "Memory (bytes): count=0", ""])


SPARSE_OPS = [("Convolution (NCHW, F32) Conv2D HWC2CHW", 0.1), ("Convolution (NCHW, F32) DWConv", 0.2),
              ("Convolution (NCHW, F32) SPMM", 0.5), ("Fully Connected (NC, F32) GEMM", 0.1)]
DENSE_OPS = [("Convolution (NHWC, F32) IGEMM", 0.3), ("Convolution (NHWC, F32) DWConv", 0.2),
             ("Fully Connected (NC, F32) GEMM", 0.6)]


def test_timings_memory_and_init_with_info_prefix():
    out = bm.parse(RUN)
    assert out.avg_ms == pytest.approx(19.9872)
    assert out.median_ms == pytest.approx(19.950)          # the regular run's, not the warm-up's 24.0
    assert out.stats.count == 50 and out.stats.p95 == 20650
    assert out.init_ms == pytest.approx(12.345)
    assert out.first_inference_us == 25000 and out.warmup_avg_us == pytest.approx(24000.5)
    assert (out.memory_init_mb, out.memory_overall_mb, out.peak_memory_mb) == (3.5, 8.25, 12.5)
    assert out.has_timing and out.error_lines == []


def test_same_values_without_prefix():
    plain = "\n".join(line.removeprefix("INFO: ") for line in RUN.splitlines())
    assert "INFO" not in plain
    a, b = bm.parse(RUN), bm.parse(plain)
    assert (b.avg_ms, b.median_ms, b.init_ms, b.peak_memory_mb) == (a.avg_ms, a.median_ms, a.init_ms, a.peak_memory_mb)


def test_scientific_notation():
    text = ("count=40 first=1300000 curr=1234000 min=1200000 max=1300000 avg=1.23457e+06 std=2000 "
            "p5=1.2e+06 median=1.23e+06 p95=1.29e+06\n"
            "Inference timings in us: Init: 1.5e+06, First inference: 1.3e+06, Warmup (avg): 1.3e+06, "
            "Inference (avg): 1.23457e+06\n")
    out = bm.parse(text)
    assert out.avg_ms == pytest.approx(1234.57)
    assert out.median_ms == pytest.approx(1230.0)
    assert out.init_ms == pytest.approx(1500.0)  # no "Initialized session" line: Init us / 1000


def test_all_same_line_fills_every_statistic():
    stats = bm.parse_stats_line("INFO: count=50 curr=19876(all same)")
    assert stats.count == 50 and stats.all_same
    assert stats.avg == stats.median == stats.min == stats.max == 19876 and stats.std == 0
    assert bm.parse("count=50 curr=19876(all same)\n").median_ms == pytest.approx(19.876)


def test_count_zero():
    assert bm.parse_stats_line("count=0").count == 0
    # warm-up printed count=0 (--warmup_runs=0): the regular line still wins
    out = bm.parse(RUN.replace("count=23 first=30100 curr=24001 min=23500 max=30100 avg=24500.5 std=900 "
                               "p5=23600 median=24000 p95=26000", "count=0"))
    assert out.median_ms == pytest.approx(19.95)
    # nothing timed at all: the run is not a result (old adb hides the exit status)
    assert not bm.parse("INFO: Running benchmark for at least 50 iterations\nINFO: count=0\n").has_timing


def test_missing_memory_lines_are_none():
    text = "\n".join(line for line in RUN.splitlines() if "memory" not in line.lower())
    out = bm.parse(text)
    assert out.peak_memory_mb is None and out.memory_overall_mb is None
    assert out.avg_ms == pytest.approx(19.9872)


def test_sparse_profile_engages_spmm_and_stem():
    out = bm.parse(RUN + profile(SPARSE_OPS))
    # Run Order rows of the regular runs only: not the init section, not Top/Summary repeats
    assert [op.node_type for op in out.ops] == [t for t, _ in SPARSE_OPS]
    assert out.ops[2].avg_ms == pytest.approx(0.5) and out.ops[2].times_called == 1
    verdict = out.sparse
    assert verdict.engaged is True and verdict.nchw_stem is True and verdict.label() == "yes"
    assert verdict.sparse_ops == ["Convolution (NCHW, F32) SPMM"]
    # the profile's own "Timings (microseconds): count=50 ..." is not the benchmark statistics line
    assert out.stats.avg == pytest.approx(19987.2)


def test_dense_profile_is_not_sparse():
    verdict = bm.parse(RUN + profile(DENSE_OPS)).sparse
    assert verdict.engaged is False and verdict.nchw_stem is False and verdict.label() == "no"


def test_fp16_sparse_kernel_names():
    ops = [("Convolution (NCHW, F16) Conv2D HWC2CHW", 0.1), ("Convolution (NCHW, F16) SPMM", 0.4)]
    assert bm.parse(profile(ops)).sparse.sparse_ops == ["Convolution (NCHW, F16) SPMM"]


def test_no_profile_means_unknown():
    verdict = bm.parse(RUN).sparse
    assert verdict.engaged is None and verdict.label() == "unknown"


def test_csv_profile():
    text = RUN + "\n".join([
        "node type, first, avg_ms, %, cdf%, mem KB, times called, name",
        '"Convolution (NCHW, F32) Conv2D HWC2CHW",0.110,0.100,10.000%,10.000%,0.000,1,"[Delegate/x:0]"',
        '"Convolution (NCHW, F32) SPMM",0.550,0.500,50.000%,60.000%,0.000,1,"[Delegate/Convolution (NCHW, F32) SPMM:1]"',
        "", "INFO: done"])
    out = bm.parse(text)
    assert len(out.ops) == 2 and out.ops[1].name == "[Delegate/Convolution (NCHW, F32) SPMM:1]"
    assert out.sparse.engaged is True


def test_failure_lines_are_kept_for_the_report():
    out = bm.parse("INFO: STARTING!\nERROR: Failed to allocate tensors!\nERROR: Benchmarking failed.\n")
    assert not out.has_timing
    assert out.error_lines == ["Failed to allocate tensors!", "Benchmarking failed."]
