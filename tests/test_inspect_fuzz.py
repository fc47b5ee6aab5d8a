"""Mutated flatbuffers through the reader and the XNNPACK analysis: only UserError, never a hang.

A few hundred cases of `tfsparse.tflite.fuzz` (the same mutations, bases and outcome rules as
`make fuzz`, which runs 10,000: see the README). Seeded, so a failure names a reproducible
(seed, case): `python -m tfsparse.fuzz --seed S --count N --save-failures DIR` writes it out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfsparse.cli import UserError
from tfsparse.tflite import fuzz
from tfsparse.tflite.inspector import inspect_bytes

ROOT = Path(__file__).resolve().parents[1]
CASES = 400   # 100 per base; `make fuzz` runs 10,000
SEED = 1      # not the command's default 0: CI adds cases to what the README's run covered


@pytest.fixture(scope="module")
def bases() -> dict[str, bytes]:
    return fuzz.standard_bases()


def test_mutated_flatbuffers_raise_only_user_error(bases):
    result, failing = fuzz.run(bases, CASES, SEED)
    assert (result["crashes"], result["hangs"]) == (0, 0), json.dumps(result["failures"][:5], indent=1)
    assert not failing and result["count"] == CASES
    # Both paths must be exercised, or the mutations are too weak (or too strong) to mean much.
    for name, counts in result["bases"].items():
        assert counts["cases"] == CASES // len(bases), (name, counts)
        assert counts["report"] > counts["cases"] // 20 and counts["error"] > counts["cases"] // 20, (name, counts)
    assert result["slowest"]["seconds"] < fuzz.DEFAULT_TIMEOUT


def test_unmutated_bases_are_readable(bases):
    for name, data in bases.items():
        assert inspect_bytes(data)["ops"], name


def test_a_case_depends_only_on_seed_and_number(bases):
    """What makes a reported (seed, case) reproducible with any --count."""
    assert fuzz.case_input(bases, 3, 17) == fuzz.case_input(bases, 3, 17)
    assert fuzz.case_input(bases, 3, 17)[1] != fuzz.case_input(bases, 4, 17)[1]
    assert [fuzz.case_input(bases, 0, i)[0] for i in range(5)] == ["fp32", "fp16", "int8", "metadata", "fp32"]


def test_crashes_and_hangs_are_counted_not_fatal(bases, monkeypatch):
    """Catches a harness that cannot fail: a reader that raises or loops must be counted,
    named with its (base, case), and not stop the run. (The first version raised its timeout
    as an Exception, which the reader's own `except Exception` turned into a UserError: a 12 s
    case was counted as fine.)"""
    import tfsparse.tflite.inspector

    def crashes(data: bytes, target: str = "arm64") -> dict:
        raise IndexError("index out of range")

    def loops(data: bytes, target: str = "arm64") -> dict:
        try:
            while True:  # as a reader might on a malformed offset
                pass
        except Exception as e:  # the reader turns everything into a UserError: a hang must get through
            raise UserError(f"corrupt file ({type(e).__name__})") from None

    monkeypatch.setattr(tfsparse.tflite.inspector, "inspect_bytes", crashes)
    result, failing = fuzz.run(bases, 3, SEED)
    assert (result["crashes"], result["hangs"], len(failing)) == (3, 0, 3)
    assert result["failures"][2] == {"case": 2, "base": "int8", "kind": "crash",
                                     "message": "IndexError: index out of range"}
    monkeypatch.setattr(tfsparse.tflite.inspector, "inspect_bytes", loops)
    result, _ = fuzz.run(bases, 2, SEED, timeout=0.2)
    assert (result["crashes"], result["hangs"]) == (0, 2) and result["seconds"] < 5


def test_command_writes_the_result_json(bases, tmp_path):
    base = tmp_path / "m.tflite"
    base.write_bytes(bases["fp32"])
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, "-m", "tfsparse.fuzz", "--count", "50", "--seed", "5", "--json", str(out),
                           str(base)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert (result["count"], result["crashes"], result["hangs"], result["seed"]) == (50, 0, 0, 5)
    assert result["bases"]["m.tflite"]["cases"] == 50
    # Holds at any machine speed: every case takes some time, the slowest is one of them, and the
    # total covers it (issue 23: a total rounded to 0.1 s read 0.0 on an idle machine).
    slowest = result["slowest"]
    assert 0 < slowest["seconds"] <= result["seconds"], result
    assert slowest["base"] == "m.tflite" and 0 <= slowest["case"] < 50, slowest
    assert result["outcomes"]["report"] + result["outcomes"]["error"] == 50
    assert "50 cases" in proc.stdout and "0 crashes, 0 hangs" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--count", "0"], "--count must be >= 1, got 0"),
    (["no/such.tflite"], "no such file: no/such.tflite"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tfsparse.fuzz", "--json", str(tmp_path / "f.json"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not (tmp_path / "f.json").exists()
