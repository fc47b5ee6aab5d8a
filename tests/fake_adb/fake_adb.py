"""STAND-IN for adb, used only by the tests. It is not adb and talks to no device.

It exists only because no Android device (or emulator) can exist on CI machines: the tests
run the real android_bench/run.sh, whose orchestration and parser are the production code,
against this script. It plays a device in the states real adb reports and answers the few
commands android_bench sends, printing benchmark_model output in each documented format
(../shared/docs/benchmark-model.md).

Driven by environment variables:
  FAKE_ADB_SCENARIO  JSON file describing the device (keys below; all optional)
  FAKE_ADB_LOG       JSON-lines file: every call's argv (+ the parsed remote words) is appended
  FAKE_ADB_STATE     folder for the fake device's files and counters (default: beside the log)

Scenario keys:
  devices        [[serial, state], ...]   state: device|unauthorized|offline|no permissions
                                          (default [["emulator-5554", "device"]])
  abi            ro.product.cpu.abi (default arm64-v8a); abilist likewise
  old_adb        true: `adb shell` exits 0 whatever the remote command did (adb < 1.0.36)
  format         output format of every run: info|plain|all_same|count0|no_memory|csv
  formats        {"name substring": format}  per model (substring of the remote file name)
  latency_us     {"dense": 20000, "sparse": 8000}; a run takes latency / num_threads;
                 a remote name containing "sparse" is sparse
  latency_by_name {"name substring": microseconds}  overrides latency_us for matching models
  profile        {"name substring": "sparse"|"dense"}  override which kernels the profile shows
  faults         {"name substring": crash|exit1|no_timing|lost|lost_once|hang}
  boot_polls     emulator: how many `getprop sys.boot_completed` answer 0 before 1 (default 2)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

LOG = os.environ.get("FAKE_ADB_LOG")
STATE = Path(os.environ.get("FAKE_ADB_STATE") or (Path(LOG).parent / "fake_adb_state" if LOG else "/tmp/fake_adb_state"))
SCENARIO = json.loads(Path(os.environ["FAKE_ADB_SCENARIO"]).read_text()) if os.environ.get("FAKE_ADB_SCENARIO") else {}
EMULATOR_SERIAL = "emulator-5554"


def load_state() -> dict:
    path = STATE / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {"files": {}, "lost": [], "counters": {}}


def save_state(state: dict) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    tmp = STATE / "state.json.tmp"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, STATE / "state.json")


def log(entry: dict) -> None:
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")


def devices(state: dict) -> list[list[str]]:
    listed = [d for d in SCENARIO.get("devices", [[EMULATOR_SERIAL, "device"]]) if d[0] not in state["lost"]]
    if (STATE / "emulator_running").is_file():
        listed = [d for d in listed if d[0] != EMULATOR_SERIAL] + [[EMULATOR_SERIAL, "device"]]
    return listed


def pick(name: str, table: dict, default=None):
    for key, value in table.items():
        if key in name:
            return value
    return default


# --------------------------------------------------------------------------- benchmark output

def profile_rows(sparse: bool, scale: float) -> list[tuple[str, float, str]]:
    if sparse:
        ops = [("Convolution (NCHW, F32) Conv2D HWC2CHW", 0.10, "Delegate/Convolution (NCHW, F32) Conv2D HWC2CHW:0"),
               ("Convolution (NCHW, F32) DWConv", 0.15, "Delegate/Convolution (NCHW, F32) DWConv:1"),
               ("Convolution (NCHW, F32) SPMM", 0.55, "Delegate/Convolution (NCHW, F32) SPMM:2"),
               ("Global Average Pooling (NCW, F32)", 0.05, "Delegate/Global Average Pooling (NCW, F32):3"),
               ("Fully Connected (NC, F32) GEMM", 0.15, "Delegate/Fully Connected (NC, F32) GEMM:4")]
    else:
        ops = [("Convolution (NHWC, F32) IGEMM", 0.15, "Delegate/Convolution (NHWC, F32) IGEMM:0"),
               ("Convolution (NHWC, F32) DWConv", 0.15, "Delegate/Convolution (NHWC, F32) DWConv:1"),
               ("Fully Connected (NC, F32) GEMM", 0.65, "Delegate/Fully Connected (NC, F32) GEMM:2"),
               ("Global Average Pooling (NWC, F32)", 0.05, "Delegate/Global Average Pooling (NWC, F32):3")]
    return [(t, share * scale, n) for t, share, n in ops]


def profile_stdout(rows, count: int) -> list[str]:
    """Mimics tflite/profiling/profile_summary_formatter.cc (stdout mode)."""
    head = "\t" + "\t".join(f"{h:>20}" for h in ["[node type]", "[first]", "[avg ms]", "[%]", "[cdf%]",
                                                  "[mem KB]", "[times called]"]) + "\t[Name]"
    total = sum(ms for _, ms, _ in rows)
    body, cdf = [], 0.0
    for node_type, ms, name in rows:
        cdf += 100 * ms / total
        body.append("\t" + "\t".join([f"{node_type:>20}", f"{ms * 1.1:20.3f}", f"{ms:20.3f}",
                                      f"{100 * ms / total:19.3f}%", f"{cdf:19.3f}%", f"{0:20.3f}",
                                      f"{1:20d}"]) + f"\t[{name}]")
    ranked = sorted(rows, key=lambda r: -r[1])
    summary = ["\t" + "\t".join(f"{h:>20}" for h in ["[Node type]", "[count]", "[avg ms]", "[avg %]", "[cdf %]",
                                                     "[mem KB]", "[times called]"])]
    summary += ["\t" + "\t".join([f"{t:>20}", f"{1:20d}", f"{ms:20.3f}", "10.000%", "10.000%", "0.000", "1"])
                for t, ms, _ in ranked]
    return (["Operator-wise Profiling Info for Regular Benchmark Runs:",
             "============================== Run Order ==============================", head, *body, "",
             "============================== Top by Computation Time ==============================",
             head, *[body[rows.index(r)] for r in ranked], "", "Number of nodes executed: %d" % len(rows),
             "============================== Summary by node type ==============================", *summary, "",
             f"Timings (microseconds): count={count} first={int(total * 1100)} curr={int(total * 1000)} "
             f"min={int(total * 990)} max={int(total * 1100)} avg={total * 1000:g} std=12",
             "Memory (bytes): count=0", f"{len(rows)} nodes observed", ""])


def profile_csv(rows) -> list[str]:
    lines = ["node type, first, avg_ms, %, cdf%, mem KB, times called, name"]
    total = sum(ms for _, ms, _ in rows)
    cdf = 0.0
    for node_type, ms, name in rows:
        cdf += 100 * ms / total
        lines.append(f'"{node_type}",{ms * 1.1:.3f},{ms:.3f},{100 * ms / total:.3f}%,{cdf:.3f}%,0.000,1,"[{name}]"')
    return lines


def benchmark_output(flags: dict, graph_path: str) -> tuple[list[str], list[str]]:
    """(stderr log lines, stdout lines) of one successful benchmark_model run."""
    graph = Path(graph_path).name  # the folder /data/local/tmp/tfsparse itself contains "sparse"
    fmt = pick(graph, SCENARIO.get("formats", {}), SCENARIO.get("format", "info"))
    sparse = pick(graph, SCENARIO.get("profile", {}), "sparse" if "sparse" in graph else "dense") == "sparse"
    if flags.get("use_xnnpack") == "false":
        sparse = False
    latencies = SCENARIO.get("latency_us", {"dense": 20000, "sparse": 8000})
    threads = max(1, int(flags.get("num_threads", "1")))
    base = pick(graph, SCENARIO.get("latency_by_name", {}), latencies["sparse" if "sparse" in graph else "dense"])
    avg = float(base) / threads
    runs, warmup = int(flags.get("num_runs", 50)), int(flags.get("warmup_runs", 1))
    median = avg * 0.99
    p = "INFO: " if fmt != "plain" else ""
    # Doubles go through %g (6 significant digits, like the C++ streams): 1.23457e+06 appears by itself.
    if fmt == "all_same":
        regular = f"count={runs} curr={int(avg)}(all same)"
        median = int(avg)
        avg = float(int(avg))
    else:
        regular = (f"count={runs} first={int(avg * 1.3)} curr={int(avg)} min={int(avg * 0.95)} max={int(avg * 1.3)} "
                   f"avg={avg:g} std={int(avg * 0.02)} p5={int(avg * 0.96)} median={median:g} p95={int(avg * 1.1)}")
    warm = "count=0" if fmt == "count0" else f"count={warmup} curr={int(avg * 1.2)}"
    err = [f"{p}STARTING!", f"{p}Log parameter values verbosely: [0]", f"{p}Num threads: [{threads}]",
           f"{p}Graph: [{graph_path}]", f"{p}Loaded model {graph_path}", f"{p}Created TensorFlow Lite XNNPACK delegate for CPU.",
           f"{p}XNNPACK delegate created.", f"{p}Explicitly applied XNNPACK delegate, and the model graph will be "
           "completely executed by the delegate.", f"{p}The input model file size (MB): 1.41201",
           f"{p}Initialized session in 12.345ms.",
           f"{p}Running benchmark for at least {warmup} iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.",
           f"{p}{warm}", "",
           f"{p}Running benchmark for at least {runs} iterations and at least 1 seconds but terminate if exceeding 150 seconds.",
           f"{p}{regular}", "",
           f"{p}Inference timings in us: Init: 12345, First inference: {avg * 1.3:g}, Warmup (avg): {avg * 1.2:g}, "
           f"Inference (avg): {avg:g}"]
    if fmt != "no_memory":
        err += [f"{p}Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
                "to the actual memory footprint of the model at runtime. Take the information at your discretion.",
                f"{p}Memory footprint delta from the start of the tool (MB): init=3.5 overall=8.25"]
        if flags.get("report_peak_memory_footprint") == "true":
            err.append(f"{p}Overall peak memory footprint (MB) via periodic monitoring: {12.5 if not sparse else 9.75}")
    out = []
    if flags.get("enable_op_profiling") == "true":
        rows = profile_rows(sparse, avg / 1000)
        out = profile_csv(rows) if fmt == "csv" else profile_stdout(rows, runs)
    return err, out


def run_benchmark(words: list[str], state: dict) -> tuple[int, list[str], list[str]]:
    """Plays /data/local/tmp/tfsparse/benchmark_model; returns (status, stdout, stderr)."""
    binary = state["files"].get(words[0])
    if binary is None:
        return 127, [], [f"/system/bin/sh: {words[0]}: not found"]
    if not binary.get("executable"):
        return 126, [], [f"/system/bin/sh: {words[0]}: can't execute: Permission denied"]
    flags = dict(w[2:].split("=", 1) for w in words[1:] if w.startswith("--") and "=" in w)
    graph = flags.get("graph", "")
    if graph not in state["files"]:
        return 1, [], ["INFO: STARTING!", f"ERROR: Could not open '{graph}'.", "ERROR: Benchmarking failed."]
    fault = pick(Path(graph).name, SCENARIO.get("faults", {}))
    if fault == "hang":
        time.sleep(120)
    if fault == "crash":
        return 139, [], ["INFO: STARTING!", "INFO: Loaded model " + graph, "Segmentation fault"]
    if fault == "exit1":
        return 1, [], ["INFO: STARTING!", "ERROR: Failed to allocate tensors!", "ERROR: Benchmarking failed."]
    if fault == "no_timing":
        return 0, [], ["INFO: STARTING!", "INFO: Loaded model " + graph]
    err, out = benchmark_output(flags, graph)
    return 0, out, err


def shell(command: str, serial: str, state: dict) -> int:
    """Plays the device's /system/bin/sh for the command shapes android_bench sends."""
    words_all = shlex.split(command)
    log({"shell": words_all, "serial": serial, "raw": command})
    m = re.fullmatch(r"(.*) 2>&1; echo (\S+)\$\?", command, re.DOTALL)
    words = shlex.split(m.group(1)) if m else words_all
    if words and words[0].endswith("/benchmark_model"):
        graph = next((w.split("=", 1)[1] for w in words if w.startswith("--graph=")), "")
        fault = pick(Path(graph).name, SCENARIO.get("faults", {}))
        if fault == "lost":
            state["lost"].append(serial)
            save_state(state)
        if fault in ("lost", "lost_once"):
            print("INFO: STARTING!", flush=True)
            print("error: closed" if fault == "lost_once" else f"error: device '{serial}' not found", file=sys.stderr)
            return 1
        status, out, err = run_benchmark(words, state)
        if m:  # `... 2>&1; echo MARKER$?`: one stream, then the marker; the shell's status is echo's
            print("\n".join(out + err), flush=True)
            if status >= 128:
                print("Segmentation fault" if status == 139 else f"Killed by signal {status - 128}", file=sys.stderr)
            print(f"{m.group(2)}{status}")
            return 0
        print("\n".join(out), flush=True)
        print("\n".join(err), file=sys.stderr)
        return status
    if words[:1] == ["getprop"]:
        name = words[1] if len(words) > 1 else ""
        abi = SCENARIO.get("abi", "arm64-v8a")
        props = {"ro.build.version.release": "14", "ro.product.cpu.abi": abi,
                 "ro.product.cpu.abilist": SCENARIO.get("abilist", abi + (",armeabi-v7a,armeabi" if abi == "arm64-v8a" else "")),
                 "ro.product.model": SCENARIO.get("product_model", "Stand-in device (fake adb)")}
        if name == "sys.boot_completed":
            polls = state["counters"].get("boot", 0)
            state["counters"]["boot"] = polls + 1
            save_state(state)
            print("1" if polls >= SCENARIO.get("boot_polls", 2) else "")
        elif name:
            print(props.get(name, ""))
        else:  # no name: every property, as `[name]: [value]`
            print("\n".join(f"[{k}]: [{v}]" for k, v in sorted(props.items())))
        return 0
    if words[:2] == ["rm", "-rf"]:
        for target in words[2:]:
            state["files"] = {k: v for k, v in state["files"].items() if not (k == target or k.startswith(target + "/"))}
        save_state(state)
        return 0
    if words[:1] == ["mkdir"] or words[:1] == ["pkill"]:
        return 0
    if words[:1] == ["chmod"]:
        for target in words[2:]:
            if target not in state["files"]:
                print(f"chmod: {target}: No such file or directory", file=sys.stderr)
                return 1
            state["files"][target]["executable"] = True
        save_state(state)
        return 0
    print(f"/system/bin/sh: {words[0] if words else ''}: not found (the adb stand-in does not play this)", file=sys.stderr)
    return 127


def main(argv: list[str]) -> int:
    state = load_state()
    log({"argv": argv})
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if argv[:1] == ["devices"]:
        print("List of devices attached")
        for dev_serial, dev_state in devices(state):
            extra = " usb:1-1 product:fake model:Stand_in device:fake transport_id:1" if dev_state == "device" else ""
            if dev_state == "no permissions":
                dev_state = "no permissions (user in plugdev group; are your udev rules wrong?); see [http://developer.android.com/tools/device.html]"
            print(f"{dev_serial:<22} {dev_state}{extra}")  # `-l` pads with spaces (plain `devices` uses a tab)
        print()
        return 0
    listed = dict((s, st) for s, st in devices(state))
    if serial is None:
        if len(listed) != 1:
            print("adb: more than one device/emulator" if listed else "adb: no devices/emulators found", file=sys.stderr)
            return 1
        serial = next(iter(listed))
    if serial not in listed:
        print(f"adb: device '{serial}' not found", file=sys.stderr)
        return 1
    if listed[serial] != "device":
        print(f"adb: device {listed[serial]}", file=sys.stderr)
        return 1
    if argv[:1] == ["push"]:
        local, remote = argv[1], argv[2]
        if not Path(local).is_file():
            print(f"adb: error: cannot stat '{local}': No such file or directory", file=sys.stderr)
            return 1
        state["files"][remote] = {"local": local, "bytes": Path(local).stat().st_size, "executable": False}
        save_state(state)
        print(f"{local}: 1 file pushed, 0 skipped. 12.3 MB/s ({Path(local).stat().st_size} bytes in 0.001s)")
        return 0
    if argv[:1] == ["shell"]:
        status = shell(" ".join(argv[1:]), serial, state)
        return 0 if SCENARIO.get("old_adb") else status
    if argv[:2] == ["emu", "kill"]:
        (STATE / "emulator_running").unlink(missing_ok=True)
        print("OK: killing emulator, bye bye")
        return 0
    print(f"adb stand-in: unsupported command {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
