"""Benchmark TFLite files on the host CPU or on an emulated arm64 CPU running real LiteRT.

XNNPACK's sparse (SpMM) kernels never run on x86 CPUs with AVX, so on the host a sparse
file is no faster than its dense twin. `--target arm64-emu` runs the aarch64 LiteRT wheel
under qemu-user (provisioned once into the cache, see tfsparse.benchmarking.arm64): the same XNNPACK
code a phone runs. Emulated milliseconds are not phone milliseconds.

Baselines. Every sparse file is timed against its *dense twin* (tfsparse.tflite.twin: the same
weights, zeros included, stored dense) in the same interleaved run: twin ms / sparse ms is
what XNNPACK's sparse path gains on identical arithmetic ("vs same weights"). On the host
(and on a phone, see android_bench) the ratio against the unpruned dense file is real too
("vs unpruned dense"). Under emulation it is not: qemu computes floating point in software,
where an instruction's cost can depend on its values (zeros are cheap: pruned weights stored
dense were seen to run up to ~2x faster than the unpruned ones, which a phone does not do).
For arm64-emu that ratio (unpruned dense / twin) is reported as the emulator's effect, never
as a speedup. `--cpu` (default cortex-a76) pins the emulated CPU: qemu's `max` offers SME,
which LiteRT then uses for dense kernels that most phones cannot run.

    python -m tfsparse.bench --target arm64-emu export/mobilenet_v1
    python -m tfsparse.bench --target arm64-emu --runs 20 --json bench/mnv1.json a.dense.tflite a.sparse.tflite
    python -m tfsparse.bench --target host export/mobilenet_v1
    python -m tfsparse.bench --target arm64-emu --litert-version 1.4.0 export/mobilenet_v1

Arguments are .tflite files or export folders (with manifest.json). Unpruned-dense pairs come
from the manifest; for files given by name, `X.sparse.V.tflite` pairs with the given file
`X.dense.V.tflite`, else `X.dense.fp32.tflite`. Every model is first run alone in its own process (a crash,
hang or allocation failure is reported for that model only), on the host and on the
target with the same seeded random inputs; then the survivors are timed interleaved.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tfsparse import cli
from tfsparse.atomic import write_json
from tfsparse.cli import ArgumentParser, UserError, run_main
from tfsparse.exporting import manifest

WORKER = Path(__file__).with_name("_arm64_worker.py")
HOST_NOTE = ("host x86 CPU: XNNPACK disables its sparse path on CPUs with AVX, so sparse files "
             "run dense here and speedups are ~1.0; use --target arm64-emu for sparse timings")
EMU_NOTE = ("emulated arm64 (qemu-user) running the aarch64 LiteRT wheel: only the ratio of a sparse "
            "file to its dense twin (same weights) in this one interleaved run means something; qemu's "
            "costs depend on the values computed (software floating point), so ratios against the unpruned "
            "dense file are not shown")
EMULATED = ("arm64-emu",)  # targets whose ratio against the unpruned dense file is an artefact
SAME_WEIGHTS, UNPRUNED = "same_weights", "unpruned_dense"
SPARSE_NAME = re.compile(r"^(?P<stem>.+)\.sparse\.(?P<variant>[^.]+)\.tflite$")
EXPORT_NAME = re.compile(r"^.+\.(?:dense|sparse)\.(?P<variant>[^.]+)\.tflite$")
# fp16 files hold fp16 weights that LiteRT dequantizes at load: they compute in fp32 like fp32 files.
FLOAT_VARIANTS = ("fp32", "fp16")


def same_arithmetic(a: Path, b: Path) -> bool:
    """Whether two export files compute alike (the same variant, or fp32 and fp16): only then does
    a ratio of their times isolate what the weights' values do. True for names of another form."""
    va, vb = (EXPORT_NAME.match(Path(p).name) for p in (a, b))
    if va is None or vb is None:
        return True
    va, vb = va["variant"], vb["variant"]
    return va == vb or (va in FLOAT_VARIANTS and vb in FLOAT_VARIANTS)


@dataclass
class Runner:
    """A Python that can run the worker: the host's, or the emulated arm64 one."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def run(self, args: list[str], threads: int, seed: int, timeout: float) -> subprocess.CompletedProcess:
        # -P: do not put tfsparse/ on sys.path (tfsparse/inspect.py would shadow the stdlib).
        env = {**self.env, "TFSPARSE_THREADS": str(threads), "TFSPARSE_SEED": str(seed)}
        return subprocess.run([*self.argv, "-P", str(WORKER), *args], env=env, capture_output=True,
                              text=True, timeout=timeout)


def host_runner() -> Runner:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return Runner([sys.executable], env)


@dataclass
class Model:
    path: Path
    inputs: Path          # seeded random inputs, written by the host probe
    host_outputs: Path
    target_outputs: Path
    host_error: str | None = None
    error: str | None = None
    invoke_ms: float | None = None
    max_abs_diff: float | None = None
    times_ms: list[float] = field(default_factory=list)
    twin_of: Path | None = None   # set on a dense twin: the sparse file it was made from

    @property
    def label(self) -> str:
        return f"{self.twin_of} (dense twin)" if self.twin_of else str(self.path)


def probe(runner: Runner, model: Model, outputs: Path, threads: int, seed: int, timeout: float) -> tuple[str | None, float | None]:
    """Runs one model once in its own process: (error or None, invoke ms)."""
    try:
        proc = runner.run(["probe", str(model.path), str(model.inputs), str(outputs)], threads, seed, timeout)
    except subprocess.TimeoutExpired:
        return f"hung: no result within --timeout {timeout:g} s", None
    report = _last_json_line(proc.stdout)
    if report is not None:
        return (None, report["invoke_ms"]) if report["ok"] else (report["error"], None)
    return _crash_message(proc), None


def bench_interleaved(runner: Runner, models: list[Model], threads: int, warmup: int, runs: int,
                      seed: int, timeout: float, work: Path) -> None:
    """Times the models A B A B ... in one process; fills `times_ms` or `error`."""
    job = {"models": [{"path": str(m.path), "inputs": str(m.inputs)} for m in models],
           "threads": threads, "warmup": warmup, "runs": runs}
    (work / "job.json").write_text(json.dumps(job))
    result_path = work / "result.json"
    # The probe's single (first, slowest) inference bounds one invocation generously.
    budget = timeout + 3 * (warmup + runs) * sum(m.invoke_ms or 0 for m in models) / 1e3
    try:
        proc = runner.run(["bench", str(work / "job.json"), str(result_path)], threads, seed, budget)
        failure = None if proc.returncode == 0 and result_path.exists() else _crash_message(proc)
    except subprocess.TimeoutExpired:
        failure = f"hung in the interleaved run (no result within {budget:.0f} s)"
    if failure:
        for m in models:
            m.error = f"interleaved run failed: {failure}"
        return
    times = json.loads(result_path.read_text())["times_ms"]
    for m in models:
        m.times_ms = times[str(m.path)]


def max_abs_diff(a_path: Path, b_path: Path) -> float:
    """Largest |a - b| over all outputs (inf if the outputs do not even match in shape)."""
    with np.load(a_path) as a, np.load(b_path) as b:
        if sorted(a.files) != sorted(b.files):
            return math.inf
        worst = 0.0
        for name in a.files:
            x, y = a[name].astype(np.float64), b[name].astype(np.float64)
            if x.shape != y.shape:
                return math.inf
            if x.size:
                worst = max(worst, float(np.max(np.abs(x - y))))
        return worst


def collect(inputs: Sequence[str]) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """Model files and (dense, sparse) pairs from file and export-folder arguments."""
    files: list[Path] = []
    pairs: list[tuple[Path, Path]] = []
    named: list[Path] = []
    for arg in inputs:
        path = Path(arg)
        if path.is_dir() or path.name == manifest.MANIFEST_NAME:
            files += manifest.files(path)
            pairs += manifest.dense_sparse_pairs(path)
        elif path.is_file():
            if path.suffix != ".tflite":
                raise UserError(f"{arg} is not a .tflite file or an export folder")
            files.append(path)
            named.append(path)
        else:
            raise UserError(f"no such file or folder: {arg}")
    for sparse in named:
        m = SPARSE_NAME.match(sparse.name)
        if m is None:
            continue
        for variant in dict.fromkeys((m["variant"], "fp32")):
            dense = sparse.with_name(f"{m['stem']}.dense.{variant}.tflite")
            if dense in named:
                pairs.append((dense, sparse))
                break
    unique = list(dict.fromkeys(files))
    if not unique:
        raise UserError("no runnable .tflite files in " + " ".join(inputs))
    return unique, list(dict.fromkeys(pairs))


def make_twins(files: list[Path], folder: Path) -> dict[Path, Path]:
    """{sparse file: its dense twin written into `folder`} for every file with a sparse tensor.
    A file the reader cannot parse gets no twin (its probe reports what is wrong with it)."""
    from tfsparse.tflite.twin import twin_if_sparse

    twins = {}
    for i, path in enumerate(files):
        try:
            data = twin_if_sparse(path.read_bytes())
        except (OSError, UserError):
            continue
        if data is not None:
            name = f"{path.stem}.dense-twin.tflite"
            twins[path] = folder / (name if not (folder / name).exists() and name not in
                                    {t.name for t in twins.values()} else f"{i}.{name}")
            twins[path].write_bytes(data)
    return twins


def measure(files: list[Path], pairs: list[tuple[Path, Path]], target: str, runner: Runner,
            litert_version: str, threads: int, warmup: int, runs: int, timeout: float,
            seed: int = 0, tolerance: float = 1e-4, keep_twins: Path | None = None,
            log=lambda s: print(s, file=sys.stderr, flush=True)) -> dict:
    """The whole benchmark, each sparse file beside its dense twin; returns the JSON report."""
    with tempfile.TemporaryDirectory(prefix="tfsparse-bench.") as tmp:
        work = Path(tmp)
        twins = make_twins(files, Path(keep_twins) if keep_twins else work)
        models = [Model(p, work / f"in{i}.npz", work / f"host{i}.npz", work / f"target{i}.npz")
                  for i, p in enumerate(files)]
        models += [Model(t, work / f"twin_in{i}.npz", work / f"twin_host{i}.npz", work / f"twin_target{i}.npz",
                         twin_of=s) for i, (s, t) in enumerate(twins.items())]
        host = host_runner()
        for m in models:
            log(f"probing {m.label} on the host")
            # The host target runs on `runner` (normally the host's Python) throughout.
            m.host_error, m.invoke_ms = probe(runner if target == "host" else host, m, m.host_outputs,
                                              threads, seed, timeout)
            if target == "host":
                m.error = m.host_error
                continue
            log(f"probing {m.label} on {target}")
            m.error, m.invoke_ms = probe(runner, m, m.target_outputs, threads, seed, timeout)
            if m.error is None and m.host_error is None:
                m.max_abs_diff = max_abs_diff(m.target_outputs, m.host_outputs)
        alive = [m for m in models if m.error is None]
        if alive:
            log(f"timing {len(alive)} model(s) interleaved on {target}: {warmup} warm-up + {runs} runs each")
            bench_interleaved(runner, alive, threads, warmup, runs, seed, timeout, work)
    return report(models, pairs, target, litert_version, threads, warmup, runs, runner, tolerance)


def paired_ratio(baseline: "Model | None", model: "Model | None") -> float | None:
    """Median over rounds of baseline ms / model ms. The interleaved run times the models one
    after the other in each round, so a load spike hits both terms of a round alike."""
    if not (baseline and model and baseline.times_ms and model.times_ms
            and baseline.error is None and model.error is None):
        return None
    a, b = np.asarray(baseline.times_ms), np.asarray(model.times_ms)
    if a.shape != b.shape or not np.all(b > 0):
        return None
    return float(np.median(a / b))


def report(models: list[Model], pairs, target, litert_version, threads, warmup, runs, runner,
           tolerance: float) -> dict:
    results = []
    for m in models:
        ok = bool(m.times_ms) and m.error is None
        entry = {
            "path": m.label,
            "median_ms": float(np.median(m.times_ms)) if ok else None,
            "p90_ms": float(np.percentile(m.times_ms, 90)) if ok else None,
            "runs": len(m.times_ms) if ok else 0,
            "max_abs_diff_vs_host": _finite(m.max_abs_diff),
            "error": m.error,
            # Within the tolerance of the host's outputs on the same inputs (None: not compared).
            "outputs_match_host": None if m.max_abs_diff is None else bool(m.max_abs_diff <= tolerance),
        }
        if m.twin_of is not None:
            entry["twin_of"] = str(m.twin_of)
        if target != "host" and m.host_error:
            entry["host_error"] = m.host_error
        results.append(entry)
    by_path = {m.path: m for m in models if m.twin_of is None}
    twin_of = {m.twin_of: m for m in models if m.twin_of is not None}
    pair_rows, zero_effect = [], []
    for sparse, twin in twin_of.items():
        pair_rows.append({"sparse": str(sparse), "baseline": twin.label, "baseline_kind": SAME_WEIGHTS,
                          "speedup": paired_ratio(twin, by_path.get(sparse))})
    for dense, sparse in pairs:
        if target in EMULATED:
            # Not a speedup under emulation (software floating point: costs depend on the values, e.g.
            # zeros): keep only the emulator's effect, unpruned dense / the same weights stored dense.
            # An int8 twin against the fp32 dense file would measure int8 arithmetic instead: left out.
            if not same_arithmetic(dense, sparse):
                continue
            zero_effect.append({"dense": str(dense), "twin": twin_of[sparse].label if sparse in twin_of else None,
                                "ratio": paired_ratio(by_path.get(dense), twin_of.get(sparse))})
        else:
            pair_rows.append({"sparse": str(sparse), "baseline": str(dense), "baseline_kind": UNPRUNED,
                              "speedup": paired_ratio(by_path.get(dense), by_path.get(sparse))})
    rep = {"target": target, "litert_version": litert_version, "threads": threads,
           "warmup": warmup, "runs": runs, "tolerance": tolerance, "device": describe_device(target, runner),
           "note": HOST_NOTE if target == "host" else EMU_NOTE,
           "results": results, "pairs": pair_rows}
    if target in EMULATED:
        rep["emulated_zero_effect"] = zero_effect
    return rep


def describe_device(target: str, runner: Runner) -> str:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if target == "host":
        return f"{cpu} ({os.cpu_count()} cores)"
    try:
        version = subprocess.run([runner.argv[0], "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        version = runner.argv[0]
    emulated = runner.argv[runner.argv.index("-cpu") + 1] if "-cpu" in runner.argv else "max"
    return f"{version}, -cpu {emulated}, aarch64 on {cpu}"


def format_table(rep: dict) -> str:
    lines = [f"target {rep['target']}  LiteRT {rep['litert_version']}  threads {rep['threads']}  "
             f"device: {rep['device']}", f"note: {rep['note']}", ""]
    names = [r["path"] for r in rep["results"]]
    width = max(len("model"), *(len(n) for n in names))
    lines.append(f"{'model':<{width}}  {'median ms':>10}  {'p90 ms':>10}  {'runs':>4}  {'max|diff| host':>14}  error")
    for r in rep["results"]:
        lines.append(f"{r['path']:<{width}}  {_num(r['median_ms'], 10, 2)}  {_num(r['p90_ms'], 10, 2)}  "
                     f"{r['runs']:>4}  {_num(r['max_abs_diff_vs_host'], 14, 'e')}  {_problem(r, rep)}")
    titles = {SAME_WEIGHTS: "vs same weights (dense twin ms / sparse ms: XNNPACK's sparse path)",
              UNPRUNED: "vs unpruned dense (dense ms / sparse ms)"}
    for kind, title in titles.items():
        rows = [p for p in rep["pairs"] if p["baseline_kind"] == kind]
        if rows:
            lines += ["", title]
            lines += [f"  {p['sparse']}: {_ratio(p['speedup'])}" for p in rows]
    effect = [e for e in rep.get("emulated_zero_effect", []) if e["twin"]]
    if effect:
        lines += ["", "emulator artefact, not a speedup: unpruned dense ms / the pruned weights stored dense ms"]
        lines += [f"  {e['dense']} / {e['twin']}: {_ratio(e['ratio'])}" for e in effect]
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value else "n/a"


def _problem(result: dict, rep: dict) -> str:
    if result["error"]:
        return result["error"]
    if result.get("outputs_match_host") is False:
        return f"OUTPUTS DIFFER from the host's by more than {rep['tolerance']:g}"
    return ""


def _num(value, width: int, fmt) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>{width}.2e}" if fmt == "e" else f"{value:>{width}.{fmt}f}"


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def _last_json_line(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "ok" in value:
            return value
    return None


def _crash_message(proc: subprocess.CompletedProcess) -> str:
    tail = " ".join((proc.stderr or "").strip().splitlines()[-3:])[-300:]
    if proc.returncode < 0:
        import signal
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return f"crashed ({name}) {tail}".strip()
    # qemu reports a guest SIGSEGV as its own exit, e.g. status 139 with "core dumped".
    return f"exited with status {proc.returncode}: {tail}".strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tfsparse.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", metavar="FILES|EXPORT_DIR")
    parser.add_argument("--target", choices=("host", "arm64-emu"), default="arm64-emu")
    parser.add_argument("--litert-version", help="ai-edge-litert version to run on arm64-emu (default: the host's)")
    parser.add_argument("--threads", type=int, default=1, action=cli.at_least(1), help="LiteRT threads (default 1)")
    cli.add_runs(parser, 10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds one model may take to load and run once (default 180)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest |target - host| output difference counted as a match (default 1e-4)")
    parser.add_argument("--json", metavar="OUT", help="write the report here (atomically)")
    parser.add_argument("--keep-twins", metavar="DIR", help="keep the dense twins made for the sparse files here")
    parser.add_argument("--cpu", default=None, metavar="MODEL",
                        help="CPU qemu emulates for arm64-emu (default cortex-a76: NEON, no SVE/SME, like most "
                             "phones; 'max' offers SVE and SME, which LiteRT then uses)")
    parser.add_argument("--qemu", metavar="PATH", help="your own qemu-aarch64 (>= 8)")
    parser.add_argument("--arm64-root", metavar="PATH", help="your own arm64 Debian 12 userland with python3.11")
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.timeout <= 0:
        raise UserError(f"--warmup must be >= 0 and --timeout > 0, got {args.warmup} and {args.timeout:g}")
    files, pairs = collect(args.inputs)
    if args.keep_twins:
        Path(args.keep_twins).mkdir(parents=True, exist_ok=True)

    from tfsparse.benchmarking import arm64  # no TensorFlow either way
    if args.target == "host":
        if args.qemu or args.arm64_root or args.cpu:
            raise UserError("--qemu/--arm64-root/--cpu apply to --target arm64-emu only")
        version = arm64.host_litert_version()
        if args.litert_version and args.litert_version != version:
            raise UserError(f"--litert-version {args.litert_version}: the host target runs the "
                            f"installed ai-edge-litert {version}")
        runner = host_runner()
    else:
        runtime = arm64.provision(args.litert_version, qemu=args.qemu, arm64_root=args.arm64_root,
                                  cpu=args.cpu or arm64.DEFAULT_CPU)
        version = runtime.litert_version
        runner = Runner(runtime.argv(), runtime.env())

    rep = measure(files, pairs, args.target, runner, version, args.threads, args.warmup, args.runs,
                  args.timeout, args.seed, args.tolerance, keep_twins=args.keep_twins)
    print(format_table(rep))
    if args.json:
        write_json(args.json, rep)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("tfsparse.bench", main))
