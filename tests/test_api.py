"""The public Python API, used the way a notebook uses it: in-process, asserting on what it returns.

create_model -> prune -> fit a few steps -> strip -> convert -> inspect -> twin -> bench (host),
then the README's "Python API" example, executed as it is written there. Plus: what importing
tfsparse does to TF_USE_LEGACY_KERAS, and the `tfsparse` command's dispatch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import tfsparse
from tfsparse import cli, commands

ROOT = Path(__file__).resolve().parents[1]


def _run_tflite(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def test_train_returns_a_result_and_a_finished_run_resumes_to_the_same_result(tmp_path):
    tiny = ["model.width_multiplier=0.25", "model.depth=4", "train.batch_size=64", "data.validation_examples=256",
            "train.equal_epochs_dense=false"]
    result = tfsparse.train(ROOT / "models" / "mobilenet_v1.toml", tmp_path / "run", overrides=tiny,
                            epochs=1, max_train_examples=256)
    assert isinstance(result, tfsparse.TrainResult)
    assert result.sparse_model.is_file() and result.dense_model.is_file()
    assert result.sparsity == pytest.approx(0.9, abs=0.005)
    assert json.loads(result.to_json())["metrics"]["epochs"] == {"dense": 1, "pruning": 1}
    again = tfsparse.train("mobilenet_v1.toml", tmp_path / "run")  # resume=None: the folder holds a run
    assert again.metrics["sparse_score"] == result.metrics["sparse_score"]
    with pytest.raises(tfsparse.TfsparseError, match="already holds a run"):
        tfsparse.train(ROOT / "models" / "mobilenet_v1.toml", tmp_path / "run", resume=False)


def test_export_an_in_memory_model_with_a_recipe_measures_it_on_the_test_split(tmp_path):
    recipe = tfsparse.load_recipe(ROOT / "models" / "mobilenet_v1.toml",
                                  {"model.width_multiplier": 0.25, "model.depth": 4})
    model = tfsparse.create_model("mobilenet_v1", num_classes=10, **recipe.model.args)
    manifest = tfsparse.export(model, tmp_path / "out", recipe=recipe, variants=["fp16"], name="mem")
    assert [(f["variant"], f["dense"]) for f in manifest.files] == [("fp32", True), ("fp16", False)]
    assert all(f["runs"] and 0 <= f["accuracy"] <= 1 and f["parity"]["top1_agreement"] > 0.9
               for f in manifest.files)
    assert manifest.data["test_examples"] == 10000 and manifest.file("fp16").is_file()
    assert json.loads(manifest.to_json())["model"] == "mem"


def _readme_api_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_example_is_the_notebook_path(tmp_path, monkeypatch, capsys):
    """The README's Python API example, run as written in one process (no subprocess):
    create_model -> prune -> fit -> strip -> convert -> inspect -> twin -> bench -> export,
    then every returned object checked as a notebook user would rely on it."""
    import tensorflow as tf

    from tfsparse.pruning.magnitude import overall_sparsity, pruned_layer_names

    code = _readme_api_example()
    assert 10 <= len(code.strip().splitlines()) <= 20
    for step in ("create_model", "prune(", "fit(", "strip(", "convert(", "inspect(", "twin(", "bench(", "export("):
        assert f"tfsparse.{step}" in code or f".{step}" in code, step
    monkeypatch.chdir(tmp_path)
    tf.keras.utils.set_random_seed(0)
    ns: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), ns)

    names = pruned_layer_names(ns["pruned"])
    assert names and all("pw" in n for n in names)  # the xnnpack policy prunes the 1x1 convolutions
    sparse = ns["sparse"]
    assert not any("prune_low_magnitude" in layer.name for layer in sparse.layers)
    assert overall_sparsity(sparse, names) == pytest.approx(0.9, abs=0.005)

    data, x = ns["data"], ns["x"][:1]
    assert data[4:8] == b"TFL3"
    np.testing.assert_allclose(_run_tflite(data, x), sparse.predict(x, verbose=0), atol=1e-5)

    report = ns["report"]
    assert isinstance(report, tfsparse.InspectReport)
    assert report.sparse_tensors >= len(names) - 1 and report.densify_ops == report.sparse_tensors
    assert report.verdict == "sparse" and report.sparse_clusters == 1
    assert all(isinstance(f, tfsparse.Finding) and f.code and f.message for f in report.findings)
    assert not report.has("no_sparse_tensor") and not report.has("not_eligible")
    assert json.loads(report.to_json())["verdict"] == "sparse"
    assert "XNNPACK (arm64): SPARSE" in str(report)
    assert tfsparse.inspect(data, target="x86-avx").has("x86_avx")

    twin_report = tfsparse.inspect(ns["twin"])
    assert twin_report.sparse_tensors == 0 and twin_report.densify_ops == 0 and twin_report.verdict == "dense"
    assert twin_report.has("no_sparse_tensor")
    np.testing.assert_array_equal(_run_tflite(ns["twin"], x), _run_tflite(data, x))

    results = ns["results"]
    assert isinstance(results, tfsparse.BenchResults) and results.target == "host"
    assert len(results.results) == 2  # the file and its dense twin
    assert all(r["error"] is None and r["median_ms"] > 0 and r["runs"] == 5 for r in results.results)
    ratio = results.speedup()
    assert ratio is not None and ratio > 0
    assert [p["baseline_kind"] for p in results.pairs] == ["same_weights"]
    assert json.loads(results.to_json())["pairs"][0]["speedup"] == ratio

    manifest = ns["manifest"]
    assert [f["path"] for f in manifest.files] == ["mine.dense.fp32.tflite", "mine.sparse.fp32.tflite"]
    assert all(f["runs"] and f["score"] is None for f in manifest.files)  # no data: no accuracy, still exported
    assert manifest.files[1]["xnnpack"]["verdict"] == "sparse"
    assert (tmp_path / "export" / "mine" / "manifest.json").is_file()
    assert "sparse" in capsys.readouterr().out


def test_every_docstring_example_of_the_api_runs(monkeypatch):
    """The examples `help(tfsparse.api)` shows are run as written (doctest), so they cannot rot.
    Only training and a report of a finished run are marked +SKIP (minutes; covered above)."""
    import doctest

    from tfsparse import api

    monkeypatch.chdir(ROOT)  # the examples name models/*.toml as a user in a checkout would
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 25 and result.failed == 0, result


def test_load_recipe_overrides_and_errors(tmp_path):
    recipe = tfsparse.load_recipe(ROOT / "models" / "mobilenet_v1.toml",
                                  {"pruning.final_sparsity": 0.8, "pruning.exclude": "^a\nb$"})
    assert recipe.pruning.final_sparsity == 0.8 and recipe.pruning.exclude == "^a\nb$"
    assert tfsparse.load_recipe(ROOT / "models" / "mobilenet_v1.toml",
                                ["train.seed=3"]).train.seed == 3
    with pytest.raises(tfsparse.TfsparseError, match="recipe not found"):
        tfsparse.load_recipe(tmp_path / "none.toml")
    with pytest.raises(tfsparse.TfsparseError, match="final_sparsity"):
        tfsparse.load_recipe(ROOT / "models" / "mobilenet_v1.toml", {"pruning.final_sparsity": 2})
    with pytest.raises(tfsparse.TfsparseError, match="did you mean"):
        tfsparse.create_model("mobilenet_v9")
    assert issubclass(cli.UserError, tfsparse.TfsparseError)


def test_typed_errors_for_bad_files_and_bad_use():
    with pytest.raises(tfsparse.TfsparseError):
        tfsparse.inspect(b"not a flatbuffer")
    with pytest.raises(tfsparse.TfsparseError, match="variant"):
        tfsparse.convert(object(), "fp64")
    with pytest.raises(tfsparse.TfsparseError, match="target"):
        tfsparse.bench([b"x"], target="phone")


def test_stage_packages_never_hide_the_api_functions():
    import tfsparse.benchmarking.bench  # noqa: F401  (the stage packages, imported as users may)
    import tfsparse.exporting.exporter  # noqa: F401
    import tfsparse.tflite.inspector  # noqa: F401
    import tfsparse.training.command  # noqa: F401

    for name in ("train", "export", "inspect", "twin", "bench", "report"):
        assert isinstance(getattr(tfsparse, name), types.FunctionType), name
    with pytest.raises(ImportError, match="the function is tfsparse.train"):
        import tfsparse.train  # noqa: F401  (a command alias, not a module)
    assert set(tfsparse.__all__) <= set(dir(tfsparse))
    for name in tfsparse.__all__:
        assert getattr(tfsparse, name) is not None


@pytest.mark.parametrize("alias", sorted(commands.MODULE_ALIASES))
def test_every_old_python_m_name_still_runs_its_command(alias):
    """`python -m tfsparse.<alias>` (README examples, users' scripts) runs the command and names
    itself that way in its usage line."""
    result = subprocess.run([sys.executable, "-m", f"tfsparse.{alias}", "--help"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: python -m tfsparse.{alias} "), result.stdout[:200]


# ---- importing tfsparse and TF_USE_LEGACY_KERAS ------------------------------------------------


class _Loader(types.ModuleType):
    """Stands in for TensorFlow's KerasLazyLoader: its state lives in its __dict__."""


def _fake_tf(state: dict | None):
    tf = types.ModuleType("tensorflow")
    if state is not None:
        loader = _Loader("keras")
        loader.__dict__.update(state)
        tf.keras = loader
    return tf


@pytest.mark.parametrize("state, expected", [
    ({"_tfll_initialized": False}, None),
    ({"_tfll_initialized": True, "_tfll_keras_version": "tf_keras"}, "tf_keras"),
    ({"_tfll_initialized": True, "_tfll_keras_version": "keras_3"}, "keras_3"),
    (None, None),
])
def test_keras_in_use_reads_the_lazy_loader_without_deciding_it(state, expected):
    assert tfsparse._keras_in_use(_fake_tf(state)) == expected


def _python(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    environ.update(env, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)


def test_import_after_tensorflow_but_before_tf_keras_is_used_gets_tf_keras():
    result = _python("import os, tensorflow as tf, tfsparse; print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.__name__)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == "1" and result.stdout.split()[1].startswith("tf_keras")


def test_real_keras_3_first_use_is_detected():
    result = _python("import tensorflow as tf; tf.keras.layers.Dense; import tfsparse")
    assert result.returncode == 1
    assert "KerasVersionError" in result.stderr and "tf.keras is Keras 3" in result.stderr


def test_explicit_settings_are_kept_or_refused():
    ok = _python("import os, tfsparse; print(os.environ['TF_USE_LEGACY_KERAS'])", TF_USE_LEGACY_KERAS="true")
    assert ok.stdout.strip() == "true", ok.stderr
    refused = _python("import tfsparse", TF_USE_LEGACY_KERAS="0")
    assert refused.returncode == 1 and "TF_USE_LEGACY_KERAS='0'" in refused.stderr


def test_a_command_refusing_the_keras_setting_says_it_in_one_line():
    environ = {**os.environ, "TF_USE_LEGACY_KERAS": "0", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "tfsparse.inspect", "model.tflite"], capture_output=True,
                            text=True, env=environ, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("tfsparse: error: TF_USE_LEGACY_KERAS='0'") and result.stderr.count("\n") == 1


# ---- the tfsparse command ----------------------------------------------------------------------


@pytest.fixture
def command(monkeypatch):
    monkeypatch.setattr(cli, "_program_name", None)
    monkeypatch.setattr(cli, "quiet_tensorflow_startup", lambda: None)
    return commands.main


def test_tfsparse_help_lists_every_subcommand(command, capsys):
    assert command(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "export", "inspect", "twin", "bench", "android-bench", "pipeline", "sweep", "report",
                 "data", "structure-study"):
        assert re.search(rf"^  {re.escape(name)}\s+\S", out, re.M), name
    assert command([]) == 2


def test_subcommands_name_themselves_in_usage_and_errors(command, capsys, tmp_path):
    assert command(["inspect", str(tmp_path / "missing.tflite")]) == 2
    assert capsys.readouterr().err.strip() == f"tfsparse inspect: error: {tmp_path / 'missing.tflite'}: no such file"
    with pytest.raises(SystemExit) as e:
        command(["twin", "--help"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("usage: tfsparse twin ")
    assert command(["expotr"]) == 2
    assert "unknown command 'expotr' (did you mean export" in capsys.readouterr().err
