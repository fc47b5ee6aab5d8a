"""Fixtures shared by test modules: real TensorFlow and TF-MOT, made once per session.

`tiny_run`: a run folder exactly as `python -m tfsparse.train` writes it (`config.toml`,
`dense.keras`, `sparse.keras` at 90% sparsity, `metrics.json`; its stdout beside it in `train.stdout`), from a 4-block x0.25
MobileNetV1 at 32x32 trained one epoch on 256 Fashion-MNIST images (~35 s on 2 cores).
Its accuracy is near chance: use it for plumbing, shapes, sizes and parity, not for
accuracy claims. Treat it as read-only; export or copy it elsewhere.

`quick_pipeline(recipe)`: `python -m tfsparse.pipeline models/<recipe>.toml --quick --skip-arm64`
run once per recipe per session (1 epoch on 1024 examples, fp32 export, host bench, report,
model card) into its own folder; the text, control and task-report tests share these runs
instead of training the same recipe three times. Read-only, like `tiny_run`.

`arm64_runtime`: the emulated arm64 LiteRT runtime, provisioned into the real cache
(~/.cache/tfsparse/arm64, or $TFSPARSE_CACHE) when a test first needs it: ~30 s from scratch
in a fresh clone, instant afterwards. Tests that run the emulator request it, so whether they
run never depends on what other tests happened to provision before collection.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "models" / "mobilenet_v1.toml"
TINY_RUN_ARGS = ["--epochs", "1", "--max-train-examples", "256",
                 "--set", "model.width_multiplier=0.25", "--set", "model.input_size=32",
                 # 4 blocks and batch 64 (4 steps/epoch) keep the run fast and the pruning
                 # schedule long enough to reach final_sparsity.
                 "--set", "model.depth=4", "--set", "train.batch_size=64",
                 "--set", "data.validation_examples=256", "--quiet",
                 # the equal-epochs dense reference is tests/test_generalisation.py's subject
                 "--set", "train.equal_epochs_dense=false"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("tiny_run") / "tiny"
    result = subprocess.run([sys.executable, "-m", "tfsparse.train", str(RECIPE), "--out", str(run), *TINY_RUN_ARGS],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"tiny training run failed:\n{result.stderr[-3000:]}"
    (run.parent / "train.stdout").write_text(result.stdout)  # what the command printed (test_train reads it)
    return run


def kill_after_epochs(proc: subprocess.Popen, run_dir: Path, phase: str = "pruning", epochs: int = 1,
                      timeout: float = 240, poll: float = 0.05) -> int:
    """SIGKILLs a training process as soon as its state.json records `epochs` finished epochs of
    `phase` (a crash at the worst moment: no clean-up runs); returns the epochs it had finished."""
    state = run_dir / "state.json"
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if state.exists() and json.loads(state.read_text())["epochs_done"][phase] >= epochs:
                break
            assert proc.poll() is None, "training ended before it could be interrupted"
            time.sleep(poll)
        else:
            pytest.fail(f"no {phase} checkpoint within {timeout:.0f} s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return json.loads(state.read_text())["epochs_done"][phase]


@dataclass(frozen=True)
class QuickRun:
    out: Path  # the pipeline's --out folder
    run_dir: Path  # runs/<recipe>: config.toml, metrics.json, dense.keras, sparse.keras
    export_dir: Path  # export/<recipe>: the .tflite files, manifest.json, README.md
    stdout: str

    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())

    def manifest(self) -> dict:
        return json.loads((self.export_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def quick_pipeline(tmp_path_factory):
    runs: dict[str, QuickRun] = {}

    def get(recipe: str) -> QuickRun:
        if recipe not in runs:
            out = tmp_path_factory.mktemp("quick") / recipe
            result = subprocess.run([sys.executable, "-m", "tfsparse.pipeline", str(ROOT / "models" / f"{recipe}.toml"),
                                     "--quick", "--skip-arm64", "--out", str(out)],
                                    cwd=ROOT, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, f"{recipe} pipeline failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            runs[recipe] = QuickRun(out, out / "runs" / recipe, out / "export" / recipe, result.stdout)
        return runs[recipe]

    return get


@pytest.fixture(scope="session")
def arm64_runtime():
    from tfsparse.benchmarking import arm64

    return arm64.provision()


# Session fixtures that train: their users must share one pytest-xdist worker, or each worker
# would train them again.
SHARED_RUNS = ("quick_pipeline", "tiny_run")


# tryfirst: xdist's own hook reads the marks to build each test's "@group" id.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for `make test`'s `-n 2 --dist loadgroup` (pytest-xdist): a test file stays in one
    worker (its module fixtures are made once), and the files that use a training session
    fixture share a worker with each other. Without xdist the marks do nothing."""
    shared = defaultdict(set)
    for item in items:
        shared[item.path].update(name for name in SHARED_RUNS if name in item.fixturenames)
    for item in items:
        names = sorted(shared[item.path])
        item.add_marker(pytest.mark.xdist_group(names[0] if names else item.path.name))
