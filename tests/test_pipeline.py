"""`python -m tfsparse.pipeline --quick` and `python -m tfsparse.sweep` end to end, on a tiny model.

Real training, converter, LiteRT and bench, including the emulated arm64 bench stage: the
`arm64_runtime` fixture provisions the emulator first (~30 s in a fresh clone), so that stage
runs in CI too, fp32 dense + sparse, 2 timed runs (in the first point; the sweep's second
point skips it to save time). The Android stage runs against the adb
stand-in of tests/fake_adb. The first pipeline run is laid out as the first point of a sweep,
so the sweep test finds that point finished and must run only the second one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfsparse.reporting import report
from tfsparse.reporting.export_table import format_pct, format_size
from tfsparse.tflite import metadata as tflite_metadata

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "models" / "mobilenet_v1.toml"
TINY = ["--set", "model.width_multiplier=0.25", "--set", "model.depth=4", "--set", "train.batch_size=64",
        "--set", "train.equal_epochs_dense=false"]  # tests/test_generalisation.py covers it
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# Emulated arm64: the fp32 dense baseline and sparse file (--quick's default), timed twice
# each, which keeps the stage to seconds on 2 cores; the numbers are a smoke test, not a result.
ARM64 = ["--arm64-variants", "fp32", "--runs", "2"]
# The sweep's new point skips it: the first point ran it, and it costs ~50 s more on 2 cores.
SWEEP_ARM64 = ["--skip-arm64"]


def run(module: str, *args, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"tfsparse.{module}", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweep")


@pytest.fixture(scope="module")
def point(sweep_dir, arm64_runtime) -> Path:
    """A --quick pipeline run at 50% sparsity, exactly as the sweep lays out its first point,
    with every stage but Android (no device here) run, the emulated arm64 bench included."""
    out = sweep_dir / "points" / "mobilenet_v1-sp50"
    result = run("pipeline", RECIPE, "--out", out, "--name", "mobilenet_v1-sp50", *TINY,
                 "--set", "pruning.final_sparsity=0.5", "--quick", *ARM64)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_pipeline_writes_report_and_model_card_with_the_json_numbers(point):
    name = "mobilenet_v1-sp50"
    state = json.loads((point / "pipeline.json").read_text())
    assert state["finished"] and {s["status"] for s in state["stages"].values()} == {"ran"}
    assert "bench arm64-emu" in state["stages"] and "arm64-emu" not in state["skipped"]
    assert "android" in state["skipped"]  # no device configured here
    export_dir = point / "export" / name
    manifest = json.loads((export_dir / "manifest.json").read_text())
    metrics = json.loads((point / "runs" / name / "metrics.json").read_text())
    host = json.loads((point / "bench" / "host.json").read_text())
    assert metrics["target_sparsity"] == 0.5 and [e["variant"] for e in manifest["files"]] == ["fp32", "fp32"]

    # The arm64 stage ran the shipped files on the emulated aarch64 LiteRT: each was timed and
    # computed what the host computes; the sparse file is compared with its dense twin only.
    arm = json.loads((point / "bench" / "arm64-emu.json").read_text())
    assert arm["target"] == "arm64-emu"
    arm_by_file = {Path(r["path"]).name: r for r in arm["results"]}
    assert set(arm_by_file) >= {Path(e["path"]).name for e in manifest["files"]}, sorted(arm_by_file)
    for r in arm["results"]:
        assert r["error"] is None and r["median_ms"] > 0 and r["outputs_match_host"] is True, r
    sparse_file = str(export_dir / f"{name}.sparse.fp32.tflite")
    [pair] = arm["pairs"]
    assert (pair["sparse"], pair["baseline_kind"]) == (sparse_file, "same_weights") and pair["speedup"] > 0
    [twin] = [r for r in arm["results"] if r.get("twin_of")]
    assert twin["twin_of"] == sparse_file and pair["baseline"] == twin["path"]
    [effect] = arm["emulated_zero_effect"]
    assert effect["twin"] == twin["path"] and effect["ratio"] > 0

    # report.md: one row per file, with the manifest's sizes/accuracy and the bench's latency.
    text = (point / "report.md").read_text()
    by_file = {Path(r["path"]).name: r for r in host["results"]}
    for entry in manifest["files"]:
        row = next(line for line in text.splitlines()
                   if line.startswith("| mobilenet_v1-sp50 |") and f"| {'dense' if entry['dense'] else 'sparse'} |" in line)
        assert format_size(entry["bytes"]) in row and format_size(entry["gzip_bytes"]) in row
        assert format_pct(entry["accuracy"]) in row
        assert report._ms(by_file[Path(entry["path"]).name]) in row
        assert report._ms(arm_by_file[Path(entry["path"]).name]) in row
    assert format_pct(manifest["sparsity"]["overall"]) in text and "host ms (1 thread)" in text
    assert "arm64-emu ms (1 thread) | arm64-emu vs same weights |" in text and "arm64-emu vs unpruned" not in text
    assert "host vs same weights | host vs unpruned dense" in text
    sparse_row = next(line for line in text.splitlines() if line.startswith("| mobilenet_v1-sp50 | fp32 | sparse |"))
    assert f"| {pair['speedup']:.2f}x |" in sparse_row
    assert "all but 1x1 convs" in text and "android skipped" in text

    # results.csv / results.json carry the same numbers.
    rows = list(csv.DictReader(open(point / "results.csv")))
    assert [int(r["bytes"]) for r in rows] == [e["bytes"] for e in manifest["files"]]
    assert [float(r["host_median_ms"]) for r in rows] == [by_file[Path(e["path"]).name]["median_ms"]
                                                           for e in manifest["files"]]
    assert [float(r["arm64-emu_median_ms"]) for r in rows] == [arm_by_file[Path(e["path"]).name]["median_ms"]
                                                                for e in manifest["files"]]
    assert [r["arm64-emu_vs_twin"] for r in rows] == ["", str(pair["speedup"])]
    assert [float(r["arm64-emu_twin_ms"] or 0) for r in rows] == [0, twin["median_ms"]]
    assert json.loads((point / "results.json").read_text())["points"][0]["sparsity"] == manifest["sparsity"]["overall"]

    # Plots: real PNGs that decode to a non-blank image.
    import matplotlib.image

    for plot in report.PLOTS:
        data = (point / plot).read_bytes()
        assert data.startswith(PNG_SIGNATURE), plot
        pixels = matplotlib.image.imread(point / plot)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and float(np.std(pixels)) > 0.01, plot
        assert f"]({plot})" in text

    # Model card: hashes, labels and input spec from the files, numbers from the manifest.
    card = (export_dir / "README.md").read_text()
    info = tflite_metadata.read((export_dir / manifest["files"][0]["path"]).read_bytes())
    for entry in manifest["files"]:
        digest = hashlib.sha256((export_dir / entry["path"]).read_bytes()).hexdigest()
        assert f"{digest}  {entry['path']}" in card
        assert format_pct(entry["accuracy"]) in card
    assert all(f"| {i} | {label} |" in card for i, label in enumerate(info["labels"]))
    assert str(info["input"]["shape"]) in card and str(info["input"]["normalisation"]["scale"]) in card
    assert "setUseXNNPACK(true)" in card and "Interpreter(modelPath:" in card
    assert not [p for p in point.rglob("*") if ".tmp" in p.name]


def test_rerun_skips_every_finished_stage(point, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(point, copy)  # keeps mtimes: the copy is as complete as the original
    shipped = {p: p.stat().st_mtime_ns for p in (copy / "export").rglob("*.tflite")}
    result = run("pipeline", RECIPE, "--out", copy, "--name", "mobilenet_v1-sp50", *TINY,
                 "--set", "pruning.final_sparsity=0.5", "--quick", *ARM64, timeout=120)
    assert result.returncode == 0, result.stderr
    stages = json.loads((copy / "pipeline.json").read_text())["stages"]
    assert {s["status"] for s in stages.values()} == {"complete (skipped)"}, stages
    assert "[pipeline] train: complete, skipped" in result.stdout
    assert "[pipeline] tfsparse train" not in result.stdout and "[pipeline] tfsparse export" not in result.stdout
    assert {p: p.stat().st_mtime_ns for p in shipped} == shipped


def test_android_stage_runs_when_a_device_and_benchmark_model_are_configured(point, tmp_path):
    from test_android_bench import FAKE, elf_binary

    copy = tmp_path / "copy"
    shutil.copytree(point, copy)
    env = {**os.environ, "ADB": str(FAKE / "adb"), "FAKE_ADB_PYTHON": sys.executable,
           "FAKE_ADB_LOG": str(tmp_path / "adb.jsonl"), "FAKE_ADB_STATE": str(tmp_path / "device"),
           "TFSPARSE_BENCHMARK_MODEL": str(elf_binary(tmp_path / "benchmark_model"))}
    (tmp_path / "scenario.json").write_text("{}")
    env["FAKE_ADB_SCENARIO"] = str(tmp_path / "scenario.json")
    result = run("pipeline", RECIPE, "--out", copy, "--name", "mobilenet_v1-sp50", *TINY,
                 "--set", "pruning.final_sparsity=0.5", "--quick", *ARM64, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    state = json.loads((copy / "pipeline.json").read_text())
    assert state["stages"]["bench android"]["status"] == "ran" and "android" not in state["skipped"]
    android = json.loads((copy / "bench" / "android" / "results.json").read_text())
    rows = list(csv.DictReader(open(copy / "results.csv")))
    twins = {r["threads"]: r for r in android["results"] if r["twin_of"]}
    assert {r["twin_of"] for r in twins.values()} == {"mobilenet_v1-sp50.sparse.fp32.tflite"}  # none for the dense file
    for r in android["results"]:
        if r["twin_of"]:
            continue  # not a shipped file: it feeds the sparse file's "vs same weights"
        row = next(x for x in rows if x["file"] == Path(r["path"]).name)
        key = f"android-t{r['threads']}"
        assert float(row[f"{key}_median_ms"]) == r["avg_ms"]
        if not r["dense"]:
            assert float(row[f"{key}_vs_twin"]) == r["speedup_vs_twin"] == twins[r["threads"]]["avg_ms"] / r["avg_ms"]
            assert float(row[f"{key}_vs_dense"]) == r["speedup_vs_dense"]
    text = (copy / "report.md").read_text()
    assert f"android-t{android['results'][0]['threads']} ms" in text
    assert "android-t1 vs same weights | android-t1 vs unpruned dense" in text


def test_interrupted_sweep_resumes_without_redoing_finished_points(point, sweep_dir):
    first = point / "runs" / "mobilenet_v1-sp50"
    before = {p: p.stat().st_mtime_ns for p in [first / "dense.keras", first / "metrics.json",
                                                *(point / "export").rglob("*.tflite")]}
    result = run("sweep", RECIPE, "--sparsity", "0.5,0.75", "--out", sweep_dir, *TINY, "--quick", *SWEEP_ARM64)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    events = [json.loads(line) for line in (sweep_dir / "sweep.log.jsonl").read_text().splitlines()]
    assert [(e["point"], e["event"]) for e in events] == [
        ("mobilenet_v1-sp50", "skipped"), ("mobilenet_v1-sp75", "started"), ("mobilenet_v1-sp75", "finished")]
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing of the finished point was redone

    # The second point pruned the first point's dense model instead of training its own.
    second = sweep_dir / "points" / "mobilenet_v1-sp75"
    metrics = json.loads((second / "runs" / "mobilenet_v1-sp75" / "metrics.json").read_text())
    assert metrics["target_sparsity"] == 0.75 and metrics["epochs"]["dense"] == 0
    assert metrics["dense_score"] == json.loads((first / "metrics.json").read_text())["dense_score"]
    assert json.loads((second / "pipeline.json").read_text())["from"].endswith("mobilenet_v1-sp50/dense.keras")

    # The sweep report holds both points; a third run redoes nothing at all.
    rows = list(csv.DictReader(open(sweep_dir / "results.csv")))
    assert sorted({(r["point"], r["target_sparsity"]) for r in rows if r["weights"] == "sparse"}) == [
        ("mobilenet_v1-sp50", "0.5"), ("mobilenet_v1-sp75", "0.75")]
    assert all((sweep_dir / plot).read_bytes().startswith(PNG_SIGNATURE) for plot in report.PLOTS)
    again = run("sweep", RECIPE, "--sparsity", "0.5,0.75", "--out", sweep_dir, *TINY, "--quick", *SWEEP_ARM64, timeout=120)
    assert again.returncode == 0 and "[pipeline]" not in again.stdout, again.stdout
    assert [json.loads(line)["event"] for line in (sweep_dir / "sweep.log.jsonl").read_text().splitlines()][-2:] == [
        "skipped", "skipped"]


@pytest.mark.parametrize("module, args, message", [
    ("sweep", ["--sparsity", "0.5,1.5"], "--sparsity: 1.5 is outside (0, 1)"),
    ("sweep", ["--sparsity", "0.5,x"], "--sparsity: 'x' is not a number"),
    ("sweep", ["--sparsity", "0.5", "--set", "pruning.final_sparsity=0.3"], "the sweep sets it per point"),
])
def test_bad_sweep_input_is_one_line_exit_2(module, args, message, tmp_path):
    result = run(module, RECIPE, "--out", tmp_path / "x", *args, timeout=60)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_a_folder_is_not_resumed_with_other_settings(point, tmp_path):
    result = run("pipeline", RECIPE, "--out", point, "--name", "mobilenet_v1-sp50", *TINY,
                 "--set", "pruning.final_sparsity=0.8", "--quick", timeout=60)
    assert result.returncode == 2 and "holds a pipeline run with set = " in result.stderr, result.stderr
    assert json.loads((point / "pipeline.json").read_text())["finished"]


def test_bad_input_leaves_no_folder_that_refuses_the_corrected_command(tmp_path):
    """A value the recipe refuses stops the pipeline before it writes anything; one the trainer
    refuses (a model TF-MOT's XNNPACK policy rejects) leaves a folder with no stage done, which
    the next command, with other settings, starts afresh instead of refusing."""
    out = tmp_path / "p"
    result = run("pipeline", RECIPE, "--out", out, "--set", "pruning.final_sparsity=1.5", timeout=120)
    assert result.returncode == 2 and "pruning.final_sparsity must be in [0, 1), got 1.5" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "[pipeline]" not in result.stdout and not out.exists()
    result = run("pipeline", RECIPE, "--out", out, "--set", "model.name=inception", timeout=300)
    assert result.returncode == 2 and "not eligible for XNNPACK sparse inference" in result.stderr, result.stderr
    assert json.loads((out / "pipeline.json").read_text())["stages"] == {}
    result = run("pipeline", RECIPE, "--out", out, "--set", "model.name=mobilenet_v3", timeout=300)
    assert result.returncode == 2 and "unknown model 'mobilenet_v3'" in result.stderr, result.stderr


def test_missing_recipe_is_one_line_exit_2(tmp_path):
    result = run("pipeline", tmp_path / "nope.toml", timeout=60)
    assert result.returncode == 2 and "no such recipe file" in result.stderr and len(result.stderr.splitlines()) == 1



@pytest.mark.parametrize("method", ["gradual", "static"])
def test_sweep_shares_the_dense_model_only_when_the_method_has_a_dense_phase(method, tmp_path, monkeypatch, capsys):
    """A sweep over a sparse-from-scratch method (static here; set and rigl alike) must not hand
    later points the first point's dense model: `tfsparse.train` refuses `--from` there, and the
    sweep failed at its second point. In-process and without training: each point's argv goes
    through the real pipeline parser and the train command's real input checks (stopped just
    before TensorFlow); the end-to-end sweep is test_interrupted_sweep_resumes_... (gradual)."""
    from tfsparse import atomic
    from tfsparse.pipeline import runner, sweep
    from tfsparse.training import command

    class Checked(Exception):
        pass

    def stop_before_tensorflow(strategy):
        raise Checked

    monkeypatch.setattr(command, "make_strategy", stop_before_tensorflow)
    points = []

    def pipeline_main(argv):
        args = runner.parse_args(argv)
        stages = runner.Pipeline(args)
        with pytest.raises(Checked):  # every input check passed, nothing written
            command.run(args.recipe, stages.run_dir, overrides=args.set, epochs=1, from_model=args.from_model)
        points.append(args)
        stages.run_dir.mkdir(parents=True)
        (stages.run_dir / "dense.keras").write_bytes(b"")  # what a finished point leaves for --from
        atomic.write_json(stages.out / "results.json", {"points": [{"name": args.name, "rows": [], "benchmarks": {}}]})
        return 0

    monkeypatch.setattr(sweep.pipeline, "main", pipeline_main)
    out = tmp_path / f"{method}-sweep"
    assert sweep.main([str(RECIPE), "--sparsity", "0.5,0.75,0.9", "--out", str(out), *TINY,
                       "--set", f"pruning.method={method}", "--quick", "--skip-arm64"]) == 0
    first_dense = out / "points" / "mobilenet_v1-sp50" / "runs" / "mobilenet_v1-sp50" / "dense.keras"
    assert [(p.name, p.from_model) for p in points] == [
        ("mobilenet_v1-sp50", None),
        ("mobilenet_v1-sp75", None if method == "static" else str(first_dense)),
        ("mobilenet_v1-sp90", None if method == "static" else str(first_dense))]
    assert [p.set[-1] for p in points] == [f"pruning.final_sparsity={v}" for v in (0.5, 0.75, 0.9)]
    said = "pruning.method = 'static' trains sparse from the first step"
    assert (said in capsys.readouterr().out) == (method == "static")
    assert ("trained sparse from scratch, no shared dense model" in (out / "report.md").read_text()) == (method == "static")
