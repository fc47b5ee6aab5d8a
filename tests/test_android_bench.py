"""android_bench/run.sh end to end against the adb STAND-IN in tests/fake_adb/.

The stand-in exists only because no Android device can exist on CI machines; the script,
its orchestration (tfsparse.benchmarking.android) and its parser (tfsparse.benchmarking.benchmark_model) are the
production code. Every test runs the real run.sh and asserts on its exit status, its
one-line errors, the commands the stand-in device received, and the report files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "android_bench" / "run.sh"
FAKE = REPO / "tests" / "fake_adb"
REMOTE_DIR = "/data/local/tmp/tfsparse"
FLAGS = ["--use_xnnpack=true", "--enable_op_profiling=true", "--report_peak_memory_footprint=true"]
ELF_MACHINE = {"arm64-v8a": 183, "armeabi-v7a": 40, "x86_64": 62, "x86": 3}


def elf_binary(path: Path, abi: str = "arm64-v8a") -> Path:
    """A file with a real ELF header for `abi` (the stand-in never executes it)."""
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack("<HH", 2, ELF_MACHINE[abi])
    path.write_bytes(header + bytes(44))
    return path


class Bench:
    """One run.sh invocation against the stand-in, in a fresh folder."""

    def __init__(self, tmp: Path, scenario: dict | None = None):
        self.tmp = tmp
        self.scenario = scenario or {}
        self.log = tmp / "adb_log.jsonl"
        self.out = tmp / "report"
        self.binary = elf_binary(tmp / "benchmark_model")

    def model(self, name: str, folder: str = "models") -> Path:
        path = self.tmp / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"TFL3" + name.encode())
        return path

    def export(self, name: str, files: list[tuple[str, str, bool]]) -> Path:
        """An export folder: (file name, variant, dense) entries + manifest.json."""
        folder = self.tmp / "export" / name
        for fname, _, _ in files:
            self.model(fname, f"export/{name}")
        manifest = {"model": name, "files": [{"path": f, "variant": v, "dense": d, "runs": True} for f, v, d in files]}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return folder

    def env(self, **extra) -> dict:
        scenario = self.tmp / "scenario.json"
        scenario.write_text(json.dumps(self.scenario))
        env = {k: v for k, v in os.environ.items() if k not in ("ADB", "TFSPARSE_BENCHMARK_MODEL", "ANDROID_HOME")}
        env.update(ADB=str(FAKE / "adb"), FAKE_ADB_PYTHON=sys.executable, FAKE_ADB_SCENARIO=str(scenario), FAKE_ADB_LOG=str(self.log),
                   FAKE_ADB_STATE=str(self.tmp / "device"), TFSPARSE_BENCHMARK_MODEL=str(self.binary), **extra)
        return env

    def argv(self, *args) -> list[str]:
        return [str(RUN_SH), "--out", str(self.out), "--runs", "5", "--threads", "1", *map(str, args)]

    def run(self, *args, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, cwd=self.tmp)

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def shell_commands(self) -> list[list[str]]:
        return [c["shell"] for c in self.calls() if "shell" in c]

    def benchmark_commands(self) -> list[list[str]]:
        return [s for s in self.shell_commands() if s[0].endswith("/benchmark_model")]

    def pushes(self) -> list[list[str]]:
        return [c["argv"][c["argv"].index("push") + 1:] for c in self.calls() if "push" in c.get("argv", [])]

    def results(self) -> list[dict]:
        return json.loads((self.out / "results.json").read_text())["results"]

    def by_model(self) -> dict[str, dict]:
        return {r["model"]: r for r in self.results()}


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def assert_cleaned(bench: Bench) -> None:
    """The last thing the device saw was the removal of our folder."""
    assert bench.shell_commands()[-1] == ["rm", "-rf", REMOTE_DIR]


def test_runs_on_a_bare_python_with_adb_and_binary_given_as_options(tmp_path):
    """Catches the Android bench needing anything beyond the standard library (the README
    promises "bash, Python >= 3.11 and adb; no TensorFlow", but every other test runs it with
    the project's .venv), and --adb / --benchmark-binary being ignored: ADB and
    TFSPARSE_BENCHMARK_MODEL are unset and no adb is on PATH, so only the options can work.

    (It replaces a --help test that checked argparse printed the options it was given. What
    those options do is tested here: --serial in test_serial_picks_one_of_several, --threads,
    --runs, --warmup, --no-xnnpack, --no-op-profiling in test_loose_files_no_xnnpack_no_op_profiling,
    --timeout in test_faults_are_recorded_and_other_models_still_run, --avd in
    test_avd_starts_boots_and_stops_the_emulator, --out and $ADB / $TFSPARSE_BENCHMARK_MODEL in
    every test, the ABI-to-binary advice in test_binary_problems_are_one_line_errors.)"""
    import venv

    bare = tmp_path / "bare"
    venv.EnvBuilder(with_pip=False).create(bare)  # the stdlib only: no numpy, no TensorFlow
    python = bare / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import numpy"], capture_output=True).returncode != 0

    bench = Bench(tmp_path, {"latency_us": {"dense": 20000, "sparse": 5000}})
    export = bench.export("net", [("net.dense.fp32.tflite", "fp32", True), ("net.sparse.fp32.tflite", "fp32", False)])
    env = {k: v for k, v in bench.env().items() if k not in ("ADB", "TFSPARSE_BENCHMARK_MODEL")}
    env.update(TFSPARSE_PYTHON=str(python), PATH="/usr/bin:/bin")
    result = bench.run("--adb", FAKE / "adb", "--benchmark-binary", bench.binary, export, env=env)
    assert result.returncode == 0, result.stderr
    assert [str(bench.binary), f"{REMOTE_DIR}/benchmark_model"] in bench.pushes()
    rows = bench.by_model()
    assert {name: r["status"] for name, r in rows.items()} == {"net.dense.fp32.tflite": "ok", "net.sparse.fp32.tflite": "ok"}
    assert rows["net.sparse.fp32.tflite"]["speedup_vs_dense"] == pytest.approx(20000 / 5000)
    assert_cleaned(bench)


def test_export_folder_dense_vs_sparse(tmp_path):
    dense_us, sparse_us = 21000, 6000
    bench = Bench(tmp_path, {"latency_us": {"dense": dense_us, "sparse": sparse_us},
                             # a sparse file whose profile shows only dense kernels (ineligible model)
                             "profile": {"stuck": "dense"}})
    odd = "net sparse fp16 $(touch pwned); 'x'.tflite"
    export = bench.export("net", [("net.dense.fp32.tflite", "fp32", True), ("net.sparse.fp32.tflite", "fp32", False),
                                  (odd, "fp16", False), ("net.sparse.stuck.fp32.tflite", "fp32", False)])
    result = bench.run("--threads", "1,4", export)
    assert result.returncode == 0, result.stderr

    # device side: binary pushed + chmod'ed, every model pushed under a sanitised name
    pushes = bench.pushes()
    assert [str(bench.binary), f"{REMOTE_DIR}/benchmark_model"] in pushes
    assert ["chmod", "755", f"{REMOTE_DIR}/benchmark_model"] in bench.shell_commands()
    pushed_local = {local for local, _ in pushes}
    assert str(export / odd) in pushed_local                      # passed verbatim, as one argv element
    remote_names = [remote for _, remote in pushes]
    assert all(r.startswith(REMOTE_DIR + "/") and set(r) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
               for r in remote_names)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()

    # every model x thread count ran with the required flags on a file that was pushed
    commands = bench.benchmark_commands()
    assert len(commands) == 4 * 2
    for cmd in commands:
        assert set(FLAGS) <= set(cmd) and "--num_runs=5" in cmd and "--warmup_runs=1" in cmd
        graph = next(w for w in cmd if w.startswith("--graph=")).split("=", 1)[1]
        assert graph in remote_names
    assert sorted(w for cmd in commands for w in cmd if w.startswith("--num_threads")) == ["--num_threads=1"] * 4 + ["--num_threads=4"] * 4
    assert_cleaned(bench)

    # report: per model and thread count, speedup against the dense baseline at the same thread count
    rows = bench.results()
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        expected_ms = (dense_us if r["dense"] else sparse_us) / r["threads"] / 1000
        assert r["avg_ms"] == pytest.approx(expected_ms)
        assert r["median_ms"] is not None and r["init_ms"] == pytest.approx(12.345) and r["peak_memory_mb"] > 0
        if r["dense"]:
            assert r["speedup_vs_dense"] is None and r["sparse_engaged"] is False
        else:
            assert r["baseline"] == "net.dense.fp32.tflite"
            assert r["speedup_vs_dense"] == pytest.approx(dense_us / sparse_us)
            assert r["sparse_engaged"] is ("stuck" not in r["model"])
    with open(bench.out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and {t["model"] for t in table} == {r["model"] for r in rows}
    summary = (bench.out / "summary.md").read_text()
    assert f"| net.sparse.fp32.tflite | 4 | {sparse_us / 4000:.2f} |" in summary
    assert f"{dense_us / sparse_us:.2f}x" in summary and "8 of 8 runs succeeded" in summary
    assert "| net.sparse.stuck.fp32.tflite | 1 |" in summary and "| no |" in summary


@pytest.mark.parametrize("devices, serial, expected", [
    ([], None, "no Android device found"),
    ([["R58M123", "unauthorized"]], None, "Allow USB debugging"),
    ([["R58M123", "offline"]], None, "is offline"),
    ([["R58M123", "no permissions"]], None, "udev"),
    ([["R58M123", "device"], ["emulator-5554", "device"]], None, "--serial"),
    ([["R58M123", "device"]], "NOPE", "device NOPE not found"),
])
def test_device_states_are_one_line_errors(tmp_path, devices, serial, expected):
    bench = Bench(tmp_path, {"devices": devices})
    args = ["--serial", serial] if serial else []
    result = bench.run(*args, bench.model("a.tflite"))
    assert result.returncode == 2
    assert expected in one_line(result.stderr)
    assert bench.pushes() == [] and bench.benchmark_commands() == []


def test_serial_picks_one_of_several(tmp_path):
    bench = Bench(tmp_path, {"devices": [["R58M123", "device"], ["emulator-5554", "device"]]})
    result = bench.run("--serial", "R58M123", bench.model("a.tflite"))
    assert result.returncode == 0, result.stderr
    device_calls = [c["argv"] for c in bench.calls() if "argv" in c and c["argv"][:1] != ["devices"]]
    assert device_calls and all(argv[:2] == ["-s", "R58M123"] for argv in device_calls)
    assert json.loads((bench.out / "results.json").read_text())["device"]["serial"] == "R58M123"


def test_binary_problems_are_one_line_errors(tmp_path):
    bench = Bench(tmp_path, {"abi": "x86_64"})
    model = bench.model("a.tflite")
    line = one_line(bench.run(model).stderr)
    assert "arm64-v8a" in line and "x86_64" in line and bench.pushes() == []

    bench.binary.write_text("#!/bin/sh\n")
    assert "not an ELF" in one_line(bench.run(model).stderr)

    env = bench.env()
    del env["TFSPARSE_BENCHMARK_MODEL"]
    result = bench.run(model, env=env)
    assert result.returncode == 2 and "TFSPARSE_BENCHMARK_MODEL" in one_line(result.stderr)

    bench.scenario = {}  # an arm64-v8a device whose abilist includes armeabi-v7a runs 32-bit ARM
    elf_binary(bench.binary, "armeabi-v7a")
    assert bench.run(model).returncode == 0


def test_faults_are_recorded_and_other_models_still_run(tmp_path):
    bench = Bench(tmp_path, {"faults": {"crash": "crash", "exit1": "exit1", "hang": "hang", "flaky": "lost_once"}})
    models = [bench.model(f"{name}.tflite") for name in ["crash", "exit1", "hang", "flaky", "good"]]
    started = time.monotonic()
    result = bench.run("--timeout", "2", *models)
    assert time.monotonic() - started < 90  # the hung run (stand-in sleeps 120 s) was cut at 2 s
    assert result.returncode == 1
    rows = bench.by_model()
    assert rows["good.tflite"]["status"] == "ok" and rows["good.tflite"]["avg_ms"] > 0
    assert "crashed (SIGSEGV)" in rows["crash.tflite"]["error"]
    assert "status 1" in rows["exit1.tflite"]["error"] and "Failed to allocate tensors" in rows["exit1.tflite"]["error"]
    assert "timed out after 2 s" in rows["hang.tflite"]["error"]
    assert "device lost" in rows["flaky.tflite"]["error"]
    assert len(bench.benchmark_commands()) == 5                   # all five were attempted
    assert ["pkill", "-f", f"{REMOTE_DIR}/benchmark_model"] in bench.shell_commands()  # the hung run was stopped
    assert_cleaned(bench)
    assert "FAILED hang.tflite threads=1: timed out" in result.stderr
    summary = (bench.out / "summary.md").read_text()
    assert "FAILED: benchmark_model crashed" in summary and "1 of 5 runs succeeded" in summary


def test_device_lost_for_good(tmp_path):
    bench = Bench(tmp_path, {"faults": {"b_lost": "lost"}})
    models = [bench.model(n) for n in ["a_ok.tflite", "b_lost.tflite", "c_after.tflite"]]
    result = bench.run(*models)
    assert result.returncode == 1
    rows = bench.by_model()
    assert rows["a_ok.tflite"]["status"] == "ok"
    assert rows["b_lost.tflite"]["error"].startswith("device lost")
    assert rows["c_after.tflite"]["error"].startswith("device lost")  # attempted, failed, recorded
    assert (bench.out / "summary.md").is_file()


def test_old_adb_exit_status_zero_is_not_trusted(tmp_path):
    bench = Bench(tmp_path, {"old_adb": True, "faults": {"crash": "crash", "silent": "no_timing"}})
    models = [bench.model(n) for n in ["crash.tflite", "silent.tflite", "fine.tflite"]]
    result = bench.run(*models)
    assert result.returncode == 1
    rows = bench.by_model()
    assert "crashed" in rows["crash.tflite"]["error"]
    assert "no timing" in rows["silent.tflite"]["error"]
    assert rows["fine.tflite"]["status"] == "ok"


def test_a_sparse_file_from_an_export_brings_its_baseline(tmp_path):
    bench = Bench(tmp_path, {"latency_us": {"dense": 30000, "sparse": 12000}})
    export = bench.export("net", [("net.dense.fp32.tflite", "fp32", True), ("net.sparse.fp32.tflite", "fp32", False)])
    result = bench.run(export / "net.sparse.fp32.tflite")   # a loose file, but the manifest beside it lists it
    assert result.returncode == 0, result.stderr
    rows = bench.by_model()
    assert set(rows) == {"net.sparse.fp32.tflite", "net.dense.fp32.tflite"}
    assert rows["net.sparse.fp32.tflite"]["speedup_vs_dense"] == pytest.approx(30000 / 12000)


def test_a_real_sparse_file_is_timed_beside_its_dense_twin(tmp_path):
    """Each sparse file's dense twin (same weights stored dense) is made, pushed and timed at
    every thread count; the report gives both ratios. Breakage caught: a twin that is not
    pushed or not run, speedups computed against the wrong baseline, a twin made of a dense file."""
    sys.path.insert(0, str(REPO))
    from tests.graphs import build_tflite
    from tfsparse.tflite.twin import dense_twin

    bench = Bench(tmp_path, {"latency_us": {"dense": 30000, "sparse": 6000}, "latency_by_name": {"twin": 24000}})
    export = bench.export("net", [("net.dense.fp32.tflite", "fp32", True), ("net.sparse.fp32.tflite", "fp32", False)])
    (export / "net.dense.fp32.tflite").write_bytes(build_tflite("unpruned"))
    sparse = build_tflite("mobilenet")
    (export / "net.sparse.fp32.tflite").write_bytes(sparse)
    result = bench.run("--threads", "1,2", export)
    assert result.returncode == 0, result.stderr
    twins = list((bench.out / "twins").iterdir())
    assert len(twins) == 1 and twins[0].read_bytes() == dense_twin(sparse)  # none for the dense file
    assert str(twins[0]) in {local for local, _ in bench.pushes()}
    assert len(bench.benchmark_commands()) == 3 * 2
    rows = bench.results()
    for r in rows:
        if r["model"] == "net.sparse.fp32.tflite":
            assert r["speedup_vs_twin"] == pytest.approx(24000 / 6000)
            assert r["speedup_vs_dense"] == pytest.approx(30000 / 6000)
            assert r["twin_avg_ms"] == pytest.approx(24000 / r["threads"] / 1000)
        elif r["twin_of"]:
            assert r["twin_of"] == "net.sparse.fp32.tflite" and r["model"] == "net.sparse.fp32.tflite (dense twin)"
        else:
            assert r["dense"] and r["speedup_vs_twin"] is None
    summary = (bench.out / "summary.md").read_text()
    assert "| vs same weights | vs unpruned dense |" in summary
    assert f"| {24000 / 6000:.2f}x | {30000 / 6000:.2f}x |" in summary
    assert_cleaned(bench)


def test_the_python_api_runs_the_same_session_in_process(tmp_path, monkeypatch):
    """`tfsparse.android_bench(...)` (no run.sh, no subprocess of ours) against the same stand-in
    device: returns the rows and ratios the command reports, and a bad option is a TfsparseError."""
    sys.path.insert(0, str(REPO))
    import tfsparse
    from tests.graphs import build_tflite

    bench = Bench(tmp_path, {"latency_us": {"dense": 30000, "sparse": 6000}, "latency_by_name": {"twin": 24000}})
    export = bench.export("net", [("net.dense.fp32.tflite", "fp32", True), ("net.sparse.fp32.tflite", "fp32", False)])
    (export / "net.dense.fp32.tflite").write_bytes(build_tflite("unpruned"))
    (export / "net.sparse.fp32.tflite").write_bytes(build_tflite("mobilenet"))
    for key, value in bench.env().items():
        monkeypatch.setenv(key, value)
    lines: list[str] = []
    results = tfsparse.android_bench([export], out=bench.out, threads=[1, 2], runs=5, log=lines.append)
    assert isinstance(results, tfsparse.AndroidBenchResults) and results.device["abi"] == "arm64-v8a"
    assert len(results.rows) == 3 * 2 and all(r["status"] == "ok" for r in results.rows)
    assert results.speedup(threads=2) == pytest.approx(24000 / 6000)
    assert results.speedup(threads=1, baseline_kind="unpruned_dense") == pytest.approx(30000 / 6000)
    assert json.loads(results.to_json())["results"] == bench.results()  # what results.json says
    assert any("threads=2" in line for line in lines)
    assert_cleaned(bench)
    with pytest.raises(tfsparse.TfsparseError, match="threads"):
        tfsparse.android_bench([export], out=tmp_path / "bad", threads=[0])


def test_every_output_format(tmp_path):
    formats = {"plainfmt": "plain", "samefmt": "all_same", "zerofmt": "count0", "nomemfmt": "no_memory",
               "csvfmt": "csv"}
    bench = Bench(tmp_path, {"formats": formats, "latency_by_name": {"slowfmt": 2345678}})
    names = [f"{key}.sparse.tflite" for key in formats] + ["slowfmt.tflite"]
    result = bench.run("--warmup", "0", *[bench.model(n) for n in names])
    assert result.returncode == 0, result.stderr
    rows = bench.by_model()
    for key in formats:
        r = rows[f"{key}.sparse.tflite"]
        assert r["avg_ms"] == pytest.approx(8.0) and r["sparse_engaged"] is True, key
    assert rows["samefmt.sparse.tflite"]["median_ms"] == pytest.approx(8.0)
    assert rows["nomemfmt.sparse.tflite"]["peak_memory_mb"] is None
    assert rows["plainfmt.sparse.tflite"]["peak_memory_mb"] == pytest.approx(9.75)
    assert "2.34568e+06" in (bench.out / "raw" / "m05_slowfmt.threads1.txt").read_text()
    assert rows["slowfmt.tflite"]["avg_ms"] == pytest.approx(2345.68)
    assert rows["slowfmt.tflite"]["sparse_engaged"] is False


def test_loose_files_no_xnnpack_no_op_profiling(tmp_path):
    bench = Bench(tmp_path)
    result = bench.run("--no-xnnpack", "--no-op-profiling", "--runs", "7", "--warmup", "3", "--threads", "1,2",
                       bench.model("a.tflite"), bench.model("b.sparse.tflite"))
    assert result.returncode == 0, result.stderr
    commands = bench.benchmark_commands()
    assert len(commands) == 4
    for cmd in commands:
        assert "--use_xnnpack=false" in cmd and "--enable_op_profiling=true" not in cmd
        assert "--num_runs=7" in cmd and "--warmup_runs=3" in cmd
    rows = bench.results()
    # no manifest: no dense baseline, so no speedup; no profile: sparse path unknown
    assert len(rows) == 4 and all(r["speedup_vs_dense"] is None and r["baseline"] is None for r in rows)
    assert all(r["sparse_engaged"] is None for r in rows)
    assert "| unknown |" in (bench.out / "summary.md").read_text()


def test_avd_starts_boots_and_stops_the_emulator(tmp_path):
    sdk = tmp_path / "sdk"
    (sdk / "emulator").mkdir(parents=True)
    shutil.copy(FAKE / "emulator", sdk / "emulator" / "emulator")
    bench = Bench(tmp_path, {"devices": [], "boot_polls": 2})
    env = bench.env(ANDROID_HOME=str(sdk), TFSPARSE_BOOT_POLL_S="0.05", PATH="/usr/bin:/bin")
    result = bench.run("--avd", "Pixel_7_API_34", bench.model("a.tflite"), env=env)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "device" / "emulator_args").read_text()
    assert "-avd Pixel_7_API_34 -no-window -no-audio -no-boot-anim" in args
    polls = [s for s in bench.shell_commands() if s == ["getprop", "sys.boot_completed"]]
    assert len(polls) == 3                                          # answered 0, 0, then 1
    assert ["-s", "emulator-5554", "emu", "kill"] in [c["argv"] for c in bench.calls() if "argv" in c]
    assert not (tmp_path / "device" / "emulator_running").exists()

    env["FAKE_EMULATOR_FAIL"] = "1"
    result = bench.run("--avd", "Broken", bench.model("a.tflite"), env=env)
    assert result.returncode == 2 and "emulator -avd Broken exited" in one_line(result.stderr)


def test_ctrl_c_cleans_the_device(tmp_path):
    bench = Bench(tmp_path, {"faults": {"hang": "hang"}})
    models = [bench.model("a_done.tflite"), bench.model("b_hang.tflite")]
    proc = subprocess.Popen(bench.argv(*models), env=bench.env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(bench.benchmark_commands()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(bench.benchmark_commands()) == 2, "the second benchmark never started"
    time.sleep(0.3)  # let the stand-in reach its sleep
    proc.send_signal(signal.SIGINT)
    # Generous: once, on a heavily loaded 2-core machine, the clean-up outlasted 30 s.
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in stderr
    assert_cleaned(bench)
    # what finished before Ctrl-C is kept
    assert [(r["model"], r["status"]) for r in bench.results()] == [("a_done.tflite", "ok")]
