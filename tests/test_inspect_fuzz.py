"""Thousands of mutated flatbuffers through the reader and the XNNPACK analysis: only UserError, never a hang.

Seeded, so a failure names a reproducible (seed, case). The base files are real converter
outputs (fp32, fp16 and int8 sparse models, one with our metadata), so mutations hit live
offsets, vtables, sparsity vectors and options rather than random noise.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.graphs` under any runner

from tests.graphs import build_tflite  # noqa: E402
from tfsparse import tflite_metadata  # noqa: E402
from tfsparse.cli import UserError  # noqa: E402
from tfsparse.inspect import inspect_bytes  # noqa: E402

CASES_PER_BASE = 800
SECONDS_PER_INPUT = 2.0  # a normal input takes a few milliseconds


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: bit flips, truncation, a random 32-bit word, a word pointing elsewhere in the file,
    a copied chunk, or a few bytes at the start (root offset / identifier)."""
    b = bytearray(data)
    kind = rng.integers(6)
    if kind == 0:
        for _ in range(rng.integers(1, 9)):
            p = rng.integers(len(b))
            b[p] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        b = b[: rng.integers(0, len(b))]
    elif kind in (2, 3):
        for _ in range(rng.integers(1, 4)):
            p = int(rng.integers(0, len(b) - 4)) & ~3
            value = int(rng.integers(0, 2**32)) if kind == 2 else int(rng.integers(0, len(b)))
            b[p:p + 4] = value.to_bytes(4, "little")
    elif kind == 4:
        n = int(rng.integers(1, 64))
        src, dst = (int(x) for x in rng.integers(0, len(b) - n, 2))
        b[dst:dst + n] = b[src:src + n]
    else:
        p = int(rng.integers(0, 8))
        b[p:p + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    return bytes(b)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


@pytest.fixture(scope="module")
def bases() -> dict[str, bytes]:
    return {"fp32": build_tflite("mobilenet"), "fp16": build_tflite("mobilenet_fp16"),
            "int8": build_tflite("int8"),
            "metadata": tflite_metadata.embed(build_tflite("squeeze_excite"), {"labels": ["a", "b"]})}


@pytest.mark.parametrize("base", ["fp32", "fp16", "int8", "metadata"])
def test_mutated_flatbuffers_raise_only_user_error(bases, base):
    rng = np.random.default_rng(sum(base.encode()))
    previous = signal.signal(signal.SIGALRM, _alarm)
    outcomes = {"report": 0, "UserError": 0}
    slowest = 0.0
    try:
        for case in range(CASES_PER_BASE):
            data = mutate(bases[base], rng)
            start = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_INPUT)
            try:
                report = inspect_bytes(data)
                json.dumps(report)  # what the CLI prints must be serialisable too
                outcomes["report"] += 1
            except UserError as e:
                assert str(e).strip(), f"{base} case {case}: UserError without a message"
                outcomes["UserError"] += 1
            except Hang:
                pytest.fail(f"{base} case {case}: no answer within {SECONDS_PER_INPUT} s")
            except Exception as e:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{base} case {case}: {type(e).__name__}: {e}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            slowest = max(slowest, time.perf_counter() - start)
    finally:
        signal.signal(signal.SIGALRM, previous)
    # Both paths must be exercised, or the mutations are too weak (or too strong) to mean much.
    assert outcomes["report"] > CASES_PER_BASE // 20 and outcomes["UserError"] > CASES_PER_BASE // 20, outcomes
    assert slowest < SECONDS_PER_INPUT


def test_unmutated_bases_are_readable(bases):
    for name, data in bases.items():
        assert inspect_bytes(data)["ops"], name
