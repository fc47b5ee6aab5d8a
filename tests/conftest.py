"""Fixtures shared by test modules: real TensorFlow and TF-MOT, made once per session.

`tiny_run`: a run folder exactly as `python -m tfsparse.train` writes it (`config.toml`,
`dense.keras`, `sparse.keras` at 90% sparsity, `metrics.json`), from a 4-block x0.25
MobileNetV1 at 32x32 trained one epoch on 256 Fashion-MNIST images (~35 s on 2 cores).
Its accuracy is near chance: use it for plumbing, shapes, sizes and parity, not for
accuracy claims. Treat it as read-only; export or copy it elsewhere.

`arm64_runtime`: the emulated arm64 LiteRT runtime, provisioned into the real cache
(~/.cache/tfsparse/arm64, or $TFSPARSE_CACHE) when a test first needs it: ~30 s from scratch
in a fresh clone, instant afterwards. Tests that run the emulator request it, so whether they
run never depends on what other tests happened to provision before collection.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "models" / "mobilenet_v1.toml"
TINY_RUN_ARGS = ["--epochs", "1", "--max-train-examples", "256",
                 "--set", "model.width_multiplier=0.25", "--set", "model.input_size=32",
                 # 4 blocks and batch 64 (4 steps/epoch) keep the run fast and the pruning
                 # schedule long enough to reach final_sparsity.
                 "--set", "model.depth=4", "--set", "train.batch_size=64",
                 "--set", "data.validation_examples=256", "--quiet"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("tiny_run") / "tiny"
    result = subprocess.run([sys.executable, "-m", "tfsparse.train", str(RECIPE), "--out", str(run), *TINY_RUN_ARGS],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"tiny training run failed:\n{result.stderr[-3000:]}"
    return run


@pytest.fixture(scope="session")
def arm64_runtime():
    from tfsparse.benchmarking import arm64

    return arm64.provision()
