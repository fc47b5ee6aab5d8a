"""Runs TFLite files with LiteRT and times them; the script `tfsparse.benchmarking.bench` starts.

It runs under qemu-user in the arm64 userland (or with the host Python for
`--target host`), so it may import only the standard library, numpy and ai_edge_litert
- no TensorFlow, no tfsparse. It talks to the host through files only:

    probe MODEL INPUTS.npz OUTPUTS.npz
        Load MODEL with its default delegate (XNNPACK), allocate, run once on the inputs in
        INPUTS.npz (written there first, seeded random, if the file does not exist yet) and
        save the outputs. Prints one JSON line {"ok", "error", "load_ms", "invoke_ms"}.
        One process per model, so a crash or hang costs only that model.

    bench JOB.json RESULT.json
        JOB = {"models": [{"path", "inputs"}], "threads", "warmup", "runs"}. Loads every
        model, warms each up, then invokes them interleaved (A B A B ...) so drift in the
        emulator or on the machine hits all alike. RESULT = {"times_ms": {path: [...]}}.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def load(path: str, threads: int) -> Interpreter:
    # Default op resolver = LiteRT applies its default XNNPACK delegate, as apps do.
    return Interpreter(model_path=path, num_threads=threads)


def random_inputs(interpreter: Interpreter, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs by tensor name: floats in [-1, 1], 8-bit integers over their range,
    wider integers (ids) in [0, 128)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for detail in interpreter.get_input_details():
        shape, dtype = tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"])
        if dtype.kind == "f":
            value = rng.uniform(-1.0, 1.0, shape)
        elif dtype == np.bool_:
            value = rng.integers(0, 2, shape)
        elif dtype.itemsize == 1:  # quantized int8/uint8 input: its whole range
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max + 1, shape)
        else:  # wider integers are ids (tokens, states) indexing a table: keep them small, >= 0
            value = rng.integers(0, 128, shape)
        inputs[detail["name"]] = value.astype(dtype)
    return inputs


def set_inputs(interpreter: Interpreter, inputs: dict[str, np.ndarray]) -> None:
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], inputs[detail["name"]])


def probe(model: str, inputs_path: str, outputs_path: str, threads: int, seed: int) -> dict:
    started = time.perf_counter()
    interpreter = load(model, threads)
    if os.path.exists(inputs_path):
        with np.load(inputs_path) as f:
            inputs = {k: f[k] for k in f.files}
    else:
        inputs = random_inputs(interpreter, seed)
        _save_npz(inputs_path, inputs)
    interpreter.allocate_tensors()
    set_inputs(interpreter, inputs)
    load_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    interpreter.invoke()
    invoke_ms = (time.perf_counter() - started) * 1e3
    outputs = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    _save_npz(outputs_path, outputs)
    return {"load_ms": load_ms, "invoke_ms": invoke_ms}


def bench(job: dict) -> dict:
    threads, warmup, runs = int(job["threads"]), int(job["warmup"]), int(job["runs"])
    interpreters = []
    for model in job["models"]:
        interpreter = load(model["path"], threads)
        interpreter.allocate_tensors()
        with np.load(model["inputs"]) as f:
            set_inputs(interpreter, {k: f[k] for k in f.files})
        interpreters.append((model["path"], interpreter))
    for _ in range(warmup):
        for _, interpreter in interpreters:
            interpreter.invoke()
    times = {path: [] for path, _ in interpreters}
    for _ in range(runs):
        for path, interpreter in interpreters:
            started = time.perf_counter_ns()
            interpreter.invoke()
            times[path].append((time.perf_counter_ns() - started) / 1e6)
    return {"times_ms": times}


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    tmp = f"{path}.tmp.npz"  # renamed into place: the host never reads half a file
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    threads = int(os.environ.get("TFSPARSE_THREADS", "1"))
    seed = int(os.environ.get("TFSPARSE_SEED", "0"))
    if argv[:1] == ["probe"] and len(argv) == 4:
        try:
            report = {"ok": True, "error": None, **probe(argv[1], argv[2], argv[3], threads, seed)}
        except Exception as e:  # the runtime's own message is what the user needs
            report = {"ok": False, "error": f"{type(e).__name__}: {' '.join(str(e).split())}"}
        print(json.dumps(report), flush=True)
        return 0
    if argv[:1] == ["bench"] and len(argv) == 3:
        with open(argv[1]) as f:
            result = bench(json.load(f))
        with open(argv[2] + ".tmp", "w") as f:
            json.dump(result, f)
        os.replace(argv[2] + ".tmp", argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
