"""Benchmark .tflite files on an Android phone or emulator over adb; report dense vs sparse.

Users run it through `android_bench/run.sh` (same options):

    android_bench/run.sh --benchmark-binary ~/Downloads/android_aarch64_benchmark_model export/mobilenet_v1
    android_bench/run.sh --serial emulator-5554 --threads 1,4 --runs 30 model.tflite other.tflite
    android_bench/run.sh --avd Pixel_7_API_34 --out bench/android/pixel7 export/mobilenet_v1

It pushes `benchmark_model` and the models to /data/local/tmp/tfsparse/, runs every model at
every thread count with XNNPACK, op profiling and peak-memory reporting on, parses the output
(`tfsparse.benchmarking.benchmark_model`), removes its files from the device (also on failure or Ctrl-C),
and writes results.json, results.csv and summary.md. A model whose run crashes, exits non-zero,
times out or loses the device is recorded as failed; the others still run; the exit status is
1 if any run failed, 2 for a problem the user must fix first (one line on stderr).

This module is the benchmark: which models, which flags, what a run's output means, the report.
Reaching the device (adb, choosing the serial, its ABI, starting an --avd emulator) is in
`tfsparse.benchmarking.adb`.

Each sparse file is also timed beside its dense twin (the same weights stored dense,
`tfsparse.tflite.twin`, written into the report folder's `twins/`): on a phone both ratios are real,
"vs same weights" (XNNPACK's sparse path alone) and "vs unpruned dense" (what the app gains).

No TensorFlow, on purpose: this runs on machines without it. Making twins needs numpy,
flatbuffers and ai-edge-litert (all plain wheels); without them, or with --no-twins, only the
ratio against the unpruned dense file is reported.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tfsparse import atomic, cli
from tfsparse.benchmarking import benchmark_model
from tfsparse.benchmarking.adb import (
    Adb,
    DeviceLost,
    check_abi,
    choose_device,
    elf_abi,
    find_tool,
    list_devices,
    start_emulator,
    stop_emulator,
)
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.errors import one_line
from tfsparse.exporting import manifest

REMOTE_DIR = "/data/local/tmp/tfsparse"
REMOTE_BINARY = f"{REMOTE_DIR}/benchmark_model"
# Appended to the remote command so the exit status survives adb versions that always return 0.
STATUS_MARKER = "tfsparse-exit-status:"
BINARY_HELP = """\
where to get benchmark_model (a native binary for the device's ABI, not the .apk):
  arm64-v8a phones      android_aarch64_benchmark_model
  armeabi-v7a phones    android_arm_benchmark_model
  x86_64 emulators      android_x86_64_benchmark_model
  x86 emulators         android_x86_benchmark_model
from https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly/latest/<name>
(listed on https://ai.google.dev/edge/litert/models/measurement), or build it with Bazel:
  bazel build -c opt --config=android_arm64 //tflite/tools/benchmark:benchmark_model
Check a phone's ABI with: adb shell getprop ro.product.cpu.abi"""


@dataclass
class Model:
    """One .tflite file to benchmark."""
    path: Path
    label: str
    remote: str
    export: str | None = None
    variant: str | None = None
    dense: bool | None = None
    baseline: Path | None = None  # dense file each sparse file is compared against
    twin_of: Path | None = None   # set on a dense twin: the sparse file it was made from


@dataclass
class RunResult:
    """One model at one thread count."""
    model: str
    path: str
    threads: int
    status: str                     # "ok" | "failed"
    error: str | None = None
    export: str | None = None
    variant: str | None = None
    dense: bool | None = None
    baseline: str | None = None
    avg_ms: float | None = None
    median_ms: float | None = None
    init_ms: float | None = None
    peak_memory_mb: float | None = None
    sparse_engaged: bool | None = None
    nchw_stem: bool | None = None
    sparse_ops: list[str] = field(default_factory=list)
    speedup_vs_dense: float | None = None
    twin_of: str | None = None          # on a twin's rows: the sparse file it was made from
    twin_avg_ms: float | None = None    # on a sparse file's rows: its dense twin's average
    speedup_vs_twin: float | None = None
    raw_output: str | None = None


# ----------------------------------------------------------------------------- inputs

def _remote_name(index: int, path: Path) -> str:
    """A shell-safe file name on the device; the index keeps sanitised names distinct."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "model"
    return f"{REMOTE_DIR}/m{index:02d}_{stem[:60]}.tflite"


def collect_models(inputs: list[str]) -> list[Model]:
    """Models from .tflite paths and export folders (their manifest gives the dense baselines).

    A loose .tflite file is paired with a dense baseline only when a manifest.json beside it
    lists it (the export stage wrote it); otherwise it is benchmarked without a speedup.
    A baseline that was not asked for is added, so every paired file gets its speedup.
    """
    entries: dict[Path, dict] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            baselines = {s.resolve(): d.resolve() for d, s in manifest.dense_sparse_pairs(path)}
            meta = {(path / e["path"]).resolve(): e for e in manifest.load(path)["files"]}
            for f in manifest.files(path):
                f = f.resolve()
                if not f.is_file():
                    raise UserError(f"{f} is listed in {manifest.manifest_path(path)} but missing")
                entries.setdefault(f, {"export": path.resolve().name, "meta": meta.get(f, {}),
                                       "baseline": baselines.get(f)})
        elif path.is_file():
            if path.suffix != ".tflite":
                raise UserError(f"{item} is not a .tflite file or an export folder")
            f = path.resolve()
            info = {"export": None, "meta": {}, "baseline": None}
            if (f.parent / manifest.MANIFEST_NAME).is_file():
                listed = {(f.parent / e["path"]).resolve(): e for e in manifest.load(f.parent)["files"]}
                if f in listed:
                    pairs = {s.resolve(): d.resolve() for d, s in manifest.dense_sparse_pairs(f.parent)}
                    info = {"export": f.parent.name, "meta": listed[f], "baseline": pairs.get(f)}
            entries.setdefault(f, info)
        else:
            raise UserError(f"{item}: no such file or folder")
    if not entries:
        raise UserError("no runnable .tflite files in " + ", ".join(inputs))
    for info in list(entries.values()):
        base = info["baseline"]
        if base is not None and base not in entries:
            if not base.is_file():
                raise UserError(f"dense baseline {base} (from {base.parent / manifest.MANIFEST_NAME}) is missing")
            listed = {(base.parent / e["path"]).resolve(): e for e in manifest.load(base.parent)["files"]}
            entries[base] = {"export": info["export"], "meta": listed.get(base, {}), "baseline": None}
    names = [f.name for f in entries]
    models = []
    for i, (f, info) in enumerate(entries.items()):
        label = f.name if names.count(f.name) == 1 else f"{f.parent.name}/{f.name}"
        meta = info["meta"]
        models.append(Model(path=f, label=label, remote=_remote_name(i, f), export=info["export"],
                            variant=meta.get("variant"), dense=meta.get("dense"), baseline=info["baseline"]))
    return models


def add_twins(models: list[Model], folder: Path, log=None) -> list[Model]:
    """`models` plus a dense twin (written into `folder`) of every file with a sparse tensor."""
    try:
        from tfsparse.tflite.twin import twin_if_sparse
    except ImportError as e:  # numpy / flatbuffers / ai-edge-litert missing on this machine
        (log or _stderr_line)(f"warning: no dense twins ({e.name} is not installed): only speedups vs the "
                              "unpruned dense file are reported")
        return models
    out = list(models)
    for model in models:
        if model.dense:
            continue
        try:
            data = twin_if_sparse(model.path.read_bytes())
        except (OSError, UserError):
            continue  # not a readable flatbuffer: its own run reports what is wrong with it
        if data is None:
            continue
        path = atomic.write_bytes(folder / f"{len(out):02d}.{model.path.stem}.dense-twin.tflite", data)
        out.append(Model(path=path, label=f"{model.label} (dense twin)", remote=_remote_name(len(out), path),
                         export=model.export, variant=model.variant, dense=None, twin_of=model.path))
    return out


def parse_threads(text: str) -> list[int]:
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or any(t < 1 for t in threads):
        raise UserError(f"--threads {text!r}: expected positive integers separated by commas, e.g. 1,2,4")
    return list(dict.fromkeys(threads))


# ----------------------------------------------------------------------------- running

def benchmark_flags(args, model: Model, threads: int) -> list[str]:
    flags = [f"--graph={model.remote}", f"--num_threads={threads}", f"--num_runs={args.runs}",
             f"--warmup_runs={args.warmup}", f"--use_xnnpack={'false' if args.no_xnnpack else 'true'}",
             "--report_peak_memory_footprint=true"]
    if not args.no_op_profiling:
        flags.append("--enable_op_profiling=true")
    return flags


def run_one(adb: Adb, args, model: Model, threads: int) -> RunResult:
    """One benchmark run; every fault ends up in the result, never as an exception."""
    result = RunResult(model=model.label, path=str(model.path), threads=threads, status="failed",
                       export=model.export, variant=model.variant, dense=model.dense,
                       baseline=model.baseline.name if model.baseline else None,
                       twin_of=model.twin_of.name if model.twin_of else None)
    command = " ".join(shlex.quote(w) for w in [REMOTE_BINARY, *benchmark_flags(args, model, threads)])
    # `2>&1`: one ordered stream; the marker gives the status even where adb returns 0 always.
    remote = f"{command} 2>&1; echo {STATUS_MARKER}$?"
    try:
        proc = adb.run(["shell", remote], timeout=args.timeout)
    except subprocess.TimeoutExpired:
        result.error = f"timed out after {args.timeout:g} s"
        _kill_remote(adb)
        return result
    text = proc.stdout + ("\n" + proc.stderr if proc.stderr.strip() else "")
    result.raw_output = text
    remote_status = None
    if m := re.search(rf"^{re.escape(STATUS_MARKER)}(\d+)\s*$", proc.stdout, re.MULTILINE):
        remote_status = int(m.group(1))
    elif proc.returncode != 0:
        # No marker: adb never reached (or lost) the device.
        result.error = f"device lost: {one_line(proc.stderr or proc.stdout, last=True) or 'adb exit ' + str(proc.returncode)}"
        return result
    parsed = benchmark_model.parse(text)
    if remote_status not in (0, None):
        reason = {139: "crashed (SIGSEGV)", 134: "crashed (SIGABRT)", 137: "was killed (SIGKILL)",
                  132: "crashed (SIGILL)", 135: "crashed (SIGBUS)"}.get(remote_status, f"exited with status {remote_status}")
        detail = _failure_detail(parsed) or one_line(text.replace(m.group(0), ""), last=True)
        result.error = f"benchmark_model {reason}" + (f": {detail}" if detail else "")
        return result
    if not parsed.has_timing:
        detail = _failure_detail(parsed) or "no timing line in the output"
        result.error = f"benchmark_model printed no timings: {detail}"
        return result
    verdict = parsed.sparse
    result.status = "ok"
    result.avg_ms, result.median_ms = parsed.avg_ms, parsed.median_ms
    result.init_ms, result.peak_memory_mb = parsed.init_ms, parsed.peak_memory_mb
    result.sparse_engaged, result.nchw_stem, result.sparse_ops = verdict.engaged, verdict.nchw_stem, verdict.sparse_ops
    return result


def _failure_detail(parsed: benchmark_model.BenchmarkOutput) -> str:
    """The most specific error line: the cause, not the closing "Benchmarking failed."."""
    specific = [line for line in parsed.error_lines if "benchmarking failed" not in line.lower()]
    return (specific or parsed.error_lines or [""])[0]


def _kill_remote(adb: Adb) -> None:
    """Stops a benchmark left running on the device after a local timeout (best effort)."""
    try:
        adb.shell("pkill", "-f", REMOTE_BINARY, timeout=20)
    except Exception:  # noqa: BLE001
        pass


def cleanup_device(adb: Adb) -> None:
    try:
        adb.shell("rm", "-rf", REMOTE_DIR, timeout=60)
    except Exception as e:  # noqa: BLE001 - never mask the real error with a cleanup error
        print(f"warning: could not remove {REMOTE_DIR} from the device: {e}", file=sys.stderr)


def add_speedups(results: list[RunResult], models: list[Model]) -> None:
    """speedup = baseline avg latency / this file's avg latency, at the same thread count; the
    baseline is the unpruned dense file (`speedup_vs_dense`) or the dense twin (`speedup_vs_twin`)."""
    by_path = {(r.path, r.threads): r for r in results}
    twins = {m.twin_of: m.path for m in models if m.twin_of is not None}
    for model in models:
        for r in results:
            if r.path != str(model.path) or r.status != "ok" or not r.avg_ms:
                continue
            base = by_path.get((str(model.baseline), r.threads)) if model.baseline else None
            if base and base.status == "ok":
                r.speedup_vs_dense = base.avg_ms / r.avg_ms
            twin = by_path.get((str(twins[model.path]), r.threads)) if model.path in twins else None
            if twin and twin.status == "ok":
                r.twin_avg_ms, r.speedup_vs_twin = twin.avg_ms, twin.avg_ms / r.avg_ms


# ----------------------------------------------------------------------------- report

CSV_COLUMNS = ["model", "threads", "status", "avg_ms", "median_ms", "init_ms", "peak_memory_mb",
               "sparse_engaged", "speedup_vs_dense", "speedup_vs_twin", "twin_avg_ms", "baseline", "twin_of",
               "variant", "dense", "export", "path", "error"]


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_report(out: Path, device: dict, settings: dict, results: list[RunResult]) -> None:
    rows = [{k: v for k, v in asdict(r).items() if k != "raw_output"} for r in results]
    atomic.write_json(out / "results.json", {"device": device, "settings": settings, "results": rows})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
    atomic.write_text(out / "results.csv", buf.getvalue())
    atomic.write_text(out / "summary.md", summary_markdown(device, settings, results))


def summary_markdown(device: dict, settings: dict, results: list[RunResult]) -> str:
    lines = [
        f"# Android benchmark: {device.get('model') or '?'} ({device.get('serial')}, {device.get('abi')})",
        "",
        f"benchmark_model {settings['binary_abi']} · threads {','.join(map(str, settings['threads']))} · "
        f"{settings['runs']} runs, {settings['warmup']} warm-up · XNNPACK {'off' if settings['no_xnnpack'] else 'on'}",
        "",
        "Latency in ms (average and median of the regular runs). Speedups at the same thread count: "
        "*vs same weights* = the file's dense twin (its weights stored dense) / the file: what XNNPACK's "
        "sparse path gains; *vs unpruned dense* = the dense baseline / the file: what the app gains. "
        "Sparse path = XNNPACK's SpMM kernels ran (from the op profile).",
        "",
        "| model | threads | avg ms | median ms | init ms | peak MB | sparse path | vs same weights | vs unpruned dense "
        "| dense baseline | status |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for r in results:
        speed = f"{r.speedup_vs_dense:.2f}x" if r.speedup_vs_dense is not None else "-"
        same = f"{r.speedup_vs_twin:.2f}x" if r.speedup_vs_twin is not None else "-"
        sparse = {True: "yes", False: "no", None: "unknown"}[r.sparse_engaged] if r.status == "ok" else "-"
        status = "ok" if r.status == "ok" else "FAILED: " + (r.error or "").replace("|", "\\|")
        name = r.model.replace("|", "\\|")
        lines.append(f"| {name} | {r.threads} | {_fmt(r.avg_ms)} | {_fmt(r.median_ms)} | {_fmt(r.init_ms)} | "
                     f"{_fmt(r.peak_memory_mb)} | {sparse} | {same} | {speed} | {_fmt(r.baseline)} | {status} |")
    failed = [r for r in results if r.status != "ok"]
    lines += ["", f"{len(results) - len(failed)} of {len(results)} runs succeeded."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main

def build_parser() -> ArgumentParser:
    prog = os.environ.get("TFSPARSE_PROG", "python -m tfsparse.android_bench")
    parser = ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Benchmark .tflite files (or export folders) on an Android device over adb with\n"
                                        "benchmark_model; report latency, memory, whether XNNPACK's sparse kernels\n"
                                        "ran, and each sparse file's speedup over its dense twin (same weights)\n"
                                        "and over its unpruned dense baseline.",
                            epilog=BINARY_HELP + "\n\nexit status: 0 all runs ok, 1 some run failed "
                                   "(recorded in the report), 2 a problem to fix first, 130 interrupted.")
    parser.add_argument("inputs", nargs="+", metavar="MODEL.tflite|EXPORT_DIR",
                        help="files to benchmark; an export folder's manifest.json pairs sparse files with their dense baseline")
    parser.add_argument("--serial", help="device serial from 'adb devices' (needed when several are attached)")
    parser.add_argument("--benchmark-binary", metavar="PATH",
                        help="benchmark_model built for the device's ABI (default: $TFSPARSE_BENCHMARK_MODEL)")
    parser.add_argument("--adb", metavar="PATH", help="adb executable (default: $ADB, PATH, $ANDROID_HOME/platform-tools)")
    parser.add_argument("--threads", default="1,2,4", help="comma-separated thread counts (default: 1,2,4)")
    cli.add_runs(parser, 50, "benchmark_model --num_runs")
    parser.add_argument("--warmup", type=int, default=1, help="benchmark_model --warmup_runs (default: 1)")
    parser.add_argument("--no-xnnpack", action="store_true", help="run with --use_xnnpack=false (reference kernels)")
    parser.add_argument("--no-op-profiling", action="store_true",
                        help="skip --enable_op_profiling (faster; the sparse path then reads 'unknown')")
    parser.add_argument("--avd", metavar="NAME",
                        help="start this emulator headless (emulator -avd NAME -no-window -no-audio -no-boot-anim, "
                             "from $TFSPARSE_EMULATOR, PATH or $ANDROID_HOME/emulator), wait for sys.boot_completed=1, stop it at the end")
    parser.add_argument("--boot-timeout", type=float, default=300, metavar="S",
                        help="seconds to wait for --avd to boot (default: 300)")
    parser.add_argument("--timeout", type=float, default=600, metavar="S",
                        help="seconds one benchmark run may take before it is stopped and recorded as failed (default: 600)")
    parser.add_argument("--no-twins", action="store_true",
                        help="do not time a dense twin (same weights stored dense) beside each sparse file")
    parser.add_argument("--out", metavar="DIR",
                        help="report folder for results.json, results.csv, summary.md, raw/ (default: bench/android/<time>)")
    return parser


@dataclass
class AndroidRun:
    """What one benchmark session measured and where its report went (results.json holds the same)."""
    out: Path
    device: dict
    settings: dict
    results: list[RunResult]

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status != "ok"]


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args, log=_stderr_line) -> AndroidRun:
    """Benchmarks `args.inputs` on the device as parsed by `build_parser()`; writes the report
    into `args.out` (results.json, results.csv, summary.md, raw/, twins/) and returns it.

    Raises UserError for anything the user must fix (no binary, no adb, no device, wrong ABI).
    Progress lines ("model threads=N ...") go to `log`.
    """
    threads = parse_threads(args.threads)
    if args.runs < 1 or args.warmup < 0:
        raise UserError(f"--runs must be >= 1 and --warmup >= 0 (got {args.runs}, {args.warmup})")
    binary = args.benchmark_binary or os.environ.get("TFSPARSE_BENCHMARK_MODEL")
    if not binary:
        raise UserError("no benchmark_model binary: pass --benchmark-binary PATH or set TFSPARSE_BENCHMARK_MODEL "
                        "(run.sh --help says where to get one for your device's ABI)")
    binary = Path(binary)
    if not binary.is_file():
        raise UserError(f"benchmark_model binary {binary} does not exist (--benchmark-binary / TFSPARSE_BENCHMARK_MODEL)")
    binary_abi = elf_abi(binary)
    models = collect_models(args.inputs)
    adb_path = find_tool(args.adb, "ADB", "adb", "platform-tools")
    if adb_path is None:
        raise UserError("adb not found: install Android platform-tools and pass --adb PATH, set ADB, or put adb on PATH")
    out = Path(args.out or Path("bench", "android", time.strftime("%Y%m%d-%H%M%S")))
    if not args.no_twins:
        models = add_twins(models, out / "twins", log)

    # SIGTERM (CI cancel, kill) takes the same way out as Ctrl-C, so the device is cleaned.
    # SIGINT explicitly too: a job started in the background (`cmd &`) inherits SIGINT
    # ignored, and Python then never raises KeyboardInterrupt for it. Only the main thread
    # may set handlers (a library caller may run us elsewhere): there the defaults stay.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
    adb = Adb(adb_path)
    emulator = None
    serial = args.serial
    try:
        if args.avd:
            emulator, serial = start_emulator(args.avd, adb, out / "emulator.log", args.boot_timeout)
        serial = choose_device(list_devices(adb), serial)
        adb = Adb(adb_path, serial)
        try:
            props = adb.getprops()
        except DeviceLost as e:
            raise UserError(f"device {serial} did not answer: {e}") from None
        device = {"serial": serial, "abi": check_abi(props, serial, binary_abi, binary),
                  "model": props.get("ro.product.model"), "android": props.get("ro.build.version.release")}
        settings = {"binary": str(binary), "binary_abi": binary_abi, "threads": threads, "runs": args.runs,
                    "warmup": args.warmup, "no_xnnpack": args.no_xnnpack, "op_profiling": not args.no_op_profiling,
                    "timeout_s": args.timeout}
        results: list[RunResult] = []
        try:
            benchmark_all(adb, args, binary, models, threads, out, results, log)
        except KeyboardInterrupt:
            if results:  # keep what was measured before the interruption
                add_speedups(results, models)
                write_report(out, device, settings, results)
                log(f"interrupted: partial report in {out / 'summary.md'}")
            raise
    finally:
        if emulator is not None:
            stop_emulator(emulator, Adb(adb_path, serial) if serial else None)
    add_speedups(results, models)
    write_report(out, device, settings, results)
    return AndroidRun(out, device, settings, results)


def main(argv=None) -> int:
    session = run(build_parser().parse_args(argv))
    for r in session.failed:
        print(f"FAILED {r.model} threads={r.threads}: {r.error}", file=sys.stderr)
    print(f"{len(session.results) - len(session.failed)}/{len(session.results)} runs ok; "
          f"report: {session.out / 'summary.md'}")
    return 1 if session.failed else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def benchmark_all(adb: Adb, args, binary: Path, models: list[Model], threads: list[int], out: Path,
                  results: list[RunResult], log=_stderr_line) -> None:
    """Pushes everything, runs every model x thread count into `results`, always cleans the device."""
    try:
        adb.shell("rm", "-rf", REMOTE_DIR, timeout=60)  # leftovers of an earlier, killed run
        adb.push(binary, REMOTE_BINARY)  # adb push creates the folder
        adb.checked_shell("chmod", "755", REMOTE_BINARY, timeout=60)
        pushed = {}
        for model in models:
            try:
                adb.push(model.path, model.remote)
                pushed[model.path] = True
            except DeviceLost as e:
                pushed[model.path] = str(e)
        for model in models:
            for n in threads:
                if pushed[model.path] is not True:
                    r = RunResult(model=model.label, path=str(model.path), threads=n, status="failed",
                                  error=pushed[model.path], export=model.export, variant=model.variant,
                                  dense=model.dense, baseline=model.baseline.name if model.baseline else None,
                                  twin_of=model.twin_of.name if model.twin_of else None)
                else:
                    log(f"{model.label} threads={n} ...")
                    r = run_one(adb, args, model, n)
                if r.raw_output is not None:
                    # The sanitised remote name is unique (indexed) and safe as a file name.
                    stem = Path(model.remote).stem
                    atomic.write_text(out / "raw" / f"{stem}.threads{n}.txt", r.raw_output)
                results.append(r)
    except DeviceLost as e:
        raise UserError(f"device {adb.serial}: {e}") from None
    finally:
        cleanup_device(adb)


if __name__ == "__main__":
    sys.exit(run_main(os.environ.get("TFSPARSE_PROG", "tfsparse.android_bench"), main))
