"""Parses what the TFLite/LiteRT `benchmark_model` tool prints (stdout + stderr together).

Pure functions over text, no I/O, no TensorFlow: android_bench runs where TF is not installed.

Formats handled (LiteRT `tflite/tools/benchmark`, `tensorflow/core/util/stats_calculator`,
`tflite/profiling/profile_summary_formatter`):

- log lines with or without an `INFO: ` / `WARN: ` prefix (older builds print none, and a
  multi-line message carries the prefix on its first line only);
- the statistics line `count=50 first=.. curr=.. min=.. max=.. avg=.. std=.. p5=.. median=.. p95=..`,
  also `count=N curr=C(all same)` and `count=0`; doubles may read `1.23457e+06`;
- `Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..`;
- `Initialized session in 12.3ms.`, the memory lines (either may be missing);
- the operator profile, stdout mode (tab-separated table) or CSV mode.

From the profile, `sparse_path` decides whether XNNPACK's sparse (NCHW SpMM) kernels ran:
XNNPACK names its 1x1 sparse convolution `Convolution (NCHW, F32) SPMM` (`F16` under fp16)
and the dense-to-NCHW stem `Convolution (NCHW, F32) Conv2D HWC2CHW`; a dense run shows only
NHWC / NC operators (`Convolution (NHWC, F32) IGEMM`, `Fully Connected (NC, F32) GEMM`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field

# Log-severity prefixes of tflite::logging ("INFO: ") and of glog-style builds.
_PREFIX = re.compile(r"^\s*(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG)\s*:\s?")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KEY_VALUE = re.compile(rf"(\w+)=({_NUMBER})(\(all same\))?")
_INIT_SESSION = re.compile(rf"Initialized session in ({_NUMBER})\s*ms")
_TIMINGS = re.compile(r"Inference timings in us:(.*)")
_TIMING_ITEM = re.compile(rf"([A-Za-z][A-Za-z ()]*?):\s*({_NUMBER})")
_MEMORY_DELTA = re.compile(rf"Memory footprint delta.*?init=({_NUMBER}).*?overall=({_NUMBER})")
_PEAK_MEMORY = re.compile(rf"Overall peak memory footprint \(MB\)[^:]*:\s*({_NUMBER})")
_FAILURE = re.compile(r"\b(error|failed|failure|abort|segmentation fault|fatal)\b", re.IGNORECASE)

SPARSE_KERNEL = "SPMM"            # Convolution (NCHW, F32|F16) SPMM
NCHW_STEM = "Conv2D HWC2CHW"      # Convolution (NCHW, F32|F16) Conv2D HWC2CHW


@dataclass
class Stats:
    """One `count=...` statistics line, in microseconds (None where not printed)."""
    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None
    all_same: bool = False


@dataclass
class OpRow:
    """One row of the operator profile (times in milliseconds)."""
    node_type: str
    first_ms: float
    avg_ms: float
    percent: float
    times_called: int
    name: str


@dataclass
class SparseVerdict:
    """Whether XNNPACK's sparse path ran; `engaged` is None when there was no op profile."""
    engaged: bool | None
    nchw_stem: bool | None
    sparse_ops: list[str] = field(default_factory=list)

    def label(self) -> str:
        return {True: "yes", False: "no", None: "unknown"}[self.engaged]


@dataclass
class BenchmarkOutput:
    """Everything parsed from one benchmark_model run."""
    init_ms: float | None = None              # "Initialized session in" (or Init: us / 1000)
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None     # "Inference (avg)", the headline number
    stats: Stats | None = None                # statistics of the regular (non-warmup) runs
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    ops: list[OpRow] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)

    @property
    def has_timing(self) -> bool:
        """True when the run got as far as timing inferences (old adb hides exit codes)."""
        return self.inference_avg_us is not None or (self.stats is not None and self.stats.count > 0)

    @property
    def avg_ms(self) -> float | None:
        us = self.inference_avg_us
        if us is None and self.stats is not None:
            us = self.stats.avg
        return None if us is None else us / 1000.0

    @property
    def median_ms(self) -> float | None:
        return None if self.stats is None or self.stats.median is None else self.stats.median / 1000.0

    @property
    def sparse(self) -> SparseVerdict:
        return sparse_path(self.ops)


def strip_prefix(line: str) -> str:
    """`INFO: count=...` -> `count=...`; lines without a prefix come back unchanged (stripped)."""
    return _PREFIX.sub("", line, count=1).strip()


def parse_stats_line(line: str) -> Stats | None:
    """Parses `count=...` (with or without log prefix); None if the line is not one."""
    line = strip_prefix(line)
    if not line.startswith("count="):
        return None
    values: dict[str, float] = {}
    all_same = False
    for key, number, same in _KEY_VALUE.findall(line):
        values[key] = float(number)
        all_same = all_same or bool(same)
    stats = Stats(count=int(values.pop("count", 0)), all_same=all_same)
    for key, value in values.items():
        if hasattr(stats, key):
            setattr(stats, key, value)
    if stats.count > 0 and stats.avg is None and stats.curr is not None:
        # `count=N curr=C(all same)` (or count=1): every run took C.
        for key in ("first", "min", "max", "avg", "median", "p5", "p95"):
            if getattr(stats, key) is None:
                setattr(stats, key, stats.curr)
        stats.std = stats.std if stats.std is not None else 0.0
    return stats


def _regular_run_stats(lines: list[str]) -> Stats | None:
    """The statistics line of the regular runs.

    benchmark_model prints `Running benchmark for at least ...` before the warm-up runs
    and again before the regular runs, each followed by a `count=` line; the last such
    pair is the regular run. Profile tables also contain `count=` text, but never at the
    start of a line, so `parse_stats_line` does not take them.
    """
    found = None
    after_running = False
    for line in lines:
        text = strip_prefix(line)
        if text.startswith("Running benchmark for at least"):
            after_running = True
            continue
        stats = parse_stats_line(text)
        if stats is not None and (after_running or found is None):
            found = stats
            after_running = False
    return found


def _float(text: str) -> float | None:
    try:
        return float(text.strip().rstrip("%"))
    except ValueError:
        return None


def _row(cells: list[str]) -> OpRow | None:
    """An op row from `node type, first, avg ms, %, cdf%, mem KB, times called, name` cells."""
    cells = [c.strip() for c in cells]
    if len(cells) < 8:
        return None
    first, avg, percent = _float(cells[1]), _float(cells[2]), _float(cells[3])
    called = _float(cells[6])
    if None in (first, avg, percent, called) or not cells[0]:
        return None
    return OpRow(cells[0], first, avg, percent, int(called), cells[7])


def parse_op_profile(lines: list[str]) -> list[OpRow]:
    """Rows of the `Run Order` section of the regular-run profile (stdout mode), or CSV rows.

    Stdout mode: tab-separated rows under `=== Run Order ===`; `Top by Computation Time`
    repeats the same rows sorted, and `Summary by node type` has other columns, so both are
    skipped. CSV mode: a header `node type, first, avg_ms, ...` then one row per op.
    """
    rows: list[OpRow] = []
    section = None
    csv_mode = False
    in_regular = True  # outputs without the header line (CSV) count as regular runs
    for raw in lines:
        text = strip_prefix(raw)
        if "Profiling Info for" in text:
            # Newer builds also print "Profiling Info for Benchmark Initialization" (init ops).
            in_regular = "Regular Benchmark Runs" in text
            section = None
            csv_mode = False
            continue
        if text.startswith("====="):
            section = text.strip("= ").strip()
            csv_mode = False
            continue
        lowered = text.lower()
        if lowered.startswith("node type") and "avg" in lowered and "," in text:
            csv_mode = True
            continue
        if not in_regular:
            continue
        if csv_mode:
            row = _row(next(csv.reader([text])))
            if row is None:
                csv_mode = False
            else:
                rows.append(row)
        elif section == "Run Order" and "\t" in raw:
            row = _row(raw.strip("\n").strip("\t").split("\t"))
            if row is not None:
                rows.append(row)
    return rows


def sparse_path(ops: list[OpRow]) -> SparseVerdict:
    """Sparse path engaged = at least one XNNPACK SpMM operator ran (see module docstring)."""
    if not ops:
        return SparseVerdict(engaged=None, nchw_stem=None)
    names = [op.node_type for op in ops] + [op.name for op in ops]
    sparse_ops = sorted({op.node_type for op in ops if SPARSE_KERNEL in op.node_type and "NCHW" in op.node_type})
    stem = any(NCHW_STEM in n for n in names)
    return SparseVerdict(engaged=bool(sparse_ops), nchw_stem=stem, sparse_ops=sparse_ops)


def parse(text: str) -> BenchmarkOutput:
    """Parses one run's combined stdout + stderr."""
    lines = text.splitlines()
    out = BenchmarkOutput(stats=_regular_run_stats(lines), ops=parse_op_profile(lines))
    for line in lines:
        body = strip_prefix(line)
        if m := _INIT_SESSION.search(body):
            out.init_ms = float(m.group(1))
        elif m := _TIMINGS.search(body):
            items = {k.strip().lower(): float(v) for k, v in _TIMING_ITEM.findall(m.group(1))}
            out.first_inference_us = items.get("first inference")
            out.warmup_avg_us = items.get("warmup (avg)")
            out.inference_avg_us = items.get("inference (avg)")
            if out.init_ms is None and "init" in items:
                out.init_ms = items["init"] / 1000.0
        elif m := _MEMORY_DELTA.search(body):
            out.memory_init_mb, out.memory_overall_mb = float(m.group(1)), float(m.group(2))
        elif m := _PEAK_MEMORY.search(body):
            out.peak_memory_mb = float(m.group(1))
        elif _FAILURE.search(body) and "\t" not in line:
            out.error_lines.append(body)
    return out
