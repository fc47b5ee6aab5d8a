"""Mutated flatbuffers through the .tflite reader and the XNNPACK analysis: only one-line errors, no crash, no hang.

    python -m tfsparse.fuzz                                   # 10,000 mutations -> bench/fuzz.json
    python -m tfsparse.fuzz --count 1000 --seed 7 --json /tmp/fuzz.json
    python -m tfsparse.fuzz --count 2000 export/mobilenet_v1/*.tflite   # your files as the bases
    python -m tfsparse.fuzz --seed 0 --start 4787 --count 1 --save-failures /tmp/f   # one case again
    make fuzz                                                 # the first command

Each case mutates one base file (case i takes base i mod the number of bases) with a generator
seeded by (seed, i) alone, so any case is reproduced by its seed and number, whatever the count.
A case is fine when `inspect_bytes` returns a JSON-serialisable report or raises a UserError
with a message (what the CLI prints as one line, exit 2); anything else is a crash, and no
answer within `--timeout` seconds is a hang. The default bases are real converter outputs
(fp32, fp16 and int8 sparse models, one with our metadata; built from tests/graphs.py, so a
source checkout is needed), so mutations hit live offsets, vtables, sparsity vectors and options
rather than random noise. tests/test_inspect_fuzz.py runs a few hundred cases of the same code.

Writes a JSON result (count, crashes, hangs, seconds, seed, outcomes per base, the slowest
case, every failure with its base, case and message); `--save-failures DIR` also writes each
failing input there. Exit status: 0 none failed, 1 some crash or hang, 2 bad input.
"""

from __future__ import annotations

import json
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from tfsparse import atomic
from tfsparse.cli import ArgumentParser, UserError, run_main

PROG = "tfsparse.fuzz"
ROOT = Path(__file__).resolve().parents[2]  # the checkout (tests/graphs.py builds the default bases)
DEFAULT_COUNT = 10_000
DEFAULT_SEED = 0
DEFAULT_TIMEOUT = 2.0  # seconds per input; a normal input takes a few milliseconds


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


def case_input(bases: dict[str, bytes], seed: int, case: int) -> tuple[str, bytes]:
    """(base name, mutated bytes) of case number `case`: depends on (seed, case) only."""
    names = list(bases)
    name = names[case % len(names)]
    return name, mutate(bases[name], np.random.default_rng([seed, case]))


def standard_bases() -> dict[str, bytes]:
    """The default bases: real converter outputs of tests/graphs.py's graphs (TensorFlow, ~10 s)."""
    if not (ROOT / "tests" / "graphs.py").is_file():
        raise UserError(f"no tests/graphs.py under {ROOT} to build the default bases: pass .tflite files")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # `tests.graphs` from a source checkout
    from tests.graphs import build_tflite
    from tfsparse.tflite import metadata as tflite_metadata

    return {"fp32": build_tflite("mobilenet"), "fp16": build_tflite("mobilenet_fp16"), "int8": build_tflite("int8"),
            "metadata": tflite_metadata.embed(build_tflite("squeeze_excite"), {"labels": ["a", "b"]})}


class _Hang(BaseException):
    """Not an Exception: the reader turns any Exception into a UserError, which would hide it."""


def _alarm(signum, frame):
    raise _Hang()


def run(bases: dict[str, bytes], count: int, seed: int = DEFAULT_SEED, timeout: float = DEFAULT_TIMEOUT,
        start: int = 0, progress=None) -> tuple[dict, dict[str, bytes]]:
    """Runs cases start..start+count-1; returns (result, {file name: bytes} of the failing inputs).

    The hang timer is SIGALRM, so this must run in the main thread; it interrupts Python code
    (the reader and analysis are pure Python), which is where a malformed offset could loop.
    """
    from tfsparse.tflite.inspector import inspect_bytes

    per_base = {name: {"cases": 0, "report": 0, "error": 0, "crash": 0, "hang": 0} for name in bases}
    failures: list[dict] = []
    failing_inputs: dict[str, bytes] = {}
    slowest = {"seconds": 0.0, "base": None, "case": None}
    previous = signal.signal(signal.SIGALRM, _alarm)
    started = time.perf_counter()
    try:
        for done, case in enumerate(range(start, start + count), 1):
            name, data = case_input(bases, seed, case)
            kind, message = "report", None
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                json.dumps(inspect_bytes(data))  # what the CLI prints must be serialisable too
            except UserError as e:
                kind, message = ("error", None) if str(e).strip() else ("crash", "UserError without a message")
            except _Hang:
                kind, message = "hang", f"no answer within {timeout} s"
            except Exception as e:  # noqa: BLE001 - catching everything is the point
                kind, message = "crash", f"{type(e).__name__}: {e}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.perf_counter() - t0
            # The alarm cannot interrupt one long numpy call; the clock still tells.
            if kind != "hang" and seconds > timeout:
                kind, message = "hang", f"took {seconds:.1f} s (limit {timeout} s)"
            if kind != "hang" and seconds > slowest["seconds"]:
                slowest = {"seconds": round(seconds, 6), "base": name, "case": case}
            per_base[name]["cases"] += 1
            per_base[name][kind] += 1
            if kind in ("crash", "hang"):
                failures.append({"case": case, "base": name, "kind": kind, "message": message[:500]})
                failing_inputs[f"seed{seed}-case{case}-{name}.tflite"] = data
            if progress and done % 1000 == 0:
                progress(f"{done}/{count} cases, {len(failures)} failed")
    finally:
        signal.signal(signal.SIGALRM, previous)
    result = {
        "count": count,
        "crashes": sum(b["crash"] for b in per_base.values()),
        "hangs": sum(b["hang"] for b in per_base.values()),
        # Microseconds: on an idle machine 50 cases take a few hundredths of a second, which a
        # coarser rounding turned into 0.0 (a "result" that says nothing ran).
        "seconds": round(time.perf_counter() - started, 6),
        "seed": seed,
        "first_case": start,
        "timeout_seconds": timeout,
        "outcomes": {k: sum(b[k] for b in per_base.values()) for k in ("report", "error")},
        "bases": {name: {**per_base[name], "bytes": len(bases[name])} for name in bases},
        "slowest": slowest,
        "failures": failures,
    }
    return result, failing_inputs


def parse_args(argv):
    parser = ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", metavar="FILE.tflite",
                        help="base files to mutate (default: the test graphs of tests/graphs.py)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"cases to run (default {DEFAULT_COUNT})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed (default {DEFAULT_SEED})")
    parser.add_argument("--start", type=int, default=0, metavar="CASE",
                        help="first case number (default 0): --start 4787 --count 1 reruns case 4787 alone")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per input before it counts as a hang (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--json", default="bench/fuzz.json", help="result file (default: bench/fuzz.json)")
    parser.add_argument("--save-failures", metavar="DIR", help="write every crashing or hanging input here")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    for name in ("seed", "start"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0, got {args.timeout}")
    for f in args.files:
        if not Path(f).is_file():
            parser.error(f"no such file: {f}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.files:
        bases = {}
        for f in args.files:
            data = Path(f).read_bytes()
            if len(data) < 64:  # a copied chunk is up to 63 bytes
                raise UserError(f"{f}: {len(data)} bytes is too small to mutate")
            bases[Path(f).name if Path(f).name not in bases else f] = data
    else:
        bases = standard_bases()
    build_seconds = time.perf_counter() - started
    print(f"[fuzz] {args.count} cases over {len(bases)} bases ({', '.join(bases)}), seed {args.seed}", flush=True)
    result, failing = run(bases, args.count, args.seed, args.timeout, args.start,
                          progress=lambda line: print(f"[fuzz] {line}", flush=True))
    result.update(command=" ".join(["python -m tfsparse.fuzz", *(argv if argv is not None else sys.argv[1:])]),
                  base_build_seconds=round(build_seconds, 6),
                  host=f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
                  finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    atomic.write_json(args.json, result)
    if args.save_failures:
        for name, data in failing.items():
            atomic.write_bytes(Path(args.save_failures) / name, data)
    print(f"[fuzz] {result['count']} cases in {result['seconds']:.3g} s: {result['crashes']} crashes, "
          f"{result['hangs']} hangs ({result['outcomes']['report']} reports, {result['outcomes']['error']} "
          f"one-line errors; slowest {result['slowest']['seconds']:.3g} s) -> {args.json}", flush=True)
    for f in result["failures"][:20]:
        print(f"[fuzz] FAILED case {f['case']} ({f['base']}, seed {args.seed}): {f['kind']}: {f['message']}",
              file=sys.stderr)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
