"""adb and the device: run adb commands, pick the device, check its ABI, start an emulator.

How to reach a device, not what to run on it: `tfsparse.benchmarking.android` decides that and
writes the report. A setup problem (no adb, no device, unauthorized, wrong ABI, an emulator
that does not boot) is a `UserError` with one line saying what to do; an adb command that
fails on a reachable device is `DeviceLost`, and the caller decides whether that fails one
model or the whole run.

Stdlib only, on purpose: android_bench/run.sh runs it with a plain python3, without TensorFlow.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tfsparse.errors import UserError, one_line

# Seconds between boot checks of --avd; the tests shorten it (their stand-in boots at once).
BOOT_POLL_S = float(os.environ.get("TFSPARSE_BOOT_POLL_S", "2"))

# ELF e_machine -> Android ABI (System V ABI / Android NDK "ABIs" page).
ELF_MACHINE_ABI = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}

DEVICE_STATE_ADVICE = {
    "unauthorized": "is unauthorized: unlock it, accept the 'Allow USB debugging' prompt, then run again",
    "offline": "is offline: reconnect it (or run 'adb kill-server'), wait until 'adb devices' says 'device', then run again",
    "no permissions": "cannot be opened (no permissions): add a udev rule for it "
                      "(https://developer.android.com/studio/run/device) or restart adb with 'adb kill-server', then run again",
    "recovery": "is in recovery mode: reboot it normally, then run again",
    "sideload": "is in sideload mode: reboot it normally, then run again",
    "bootloader": "is in the bootloader: reboot it normally, then run again",
}


class DeviceLost(Exception):
    """adb could not reach the device for a command."""


class Adb:
    """Runs adb commands (argument lists, never through a local shell)."""

    def __init__(self, adb: str, serial: str | None = None):
        self.adb = adb
        self.serial = serial

    def _argv(self, args: list[str]) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        """Runs adb; kills its whole process group on timeout (raises subprocess.TimeoutExpired)."""
        proc = subprocess.Popen(self._argv(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            # start_new_session: Ctrl-C does not reach adb by itself; kill it with its children.
            _kill_group(proc)
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def shell(self, *words: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`adb shell` with each word quoted: the device's shell sees exactly these words."""
        return self.run(["shell", " ".join(shlex.quote(w) for w in words)], timeout=timeout)

    def checked_shell(self, *words: str, timeout: float = 120) -> str:
        result = self.shell(*words, timeout=timeout)
        if result.returncode != 0:
            raise DeviceLost(one_line(result.stderr or result.stdout, last=True) or f"adb shell {words[0]} failed")
        return result.stdout

    def push(self, local: Path, remote: str, timeout: float = 600) -> None:
        result = self.run(["push", str(local), remote], timeout=timeout)
        if result.returncode != 0:
            raise DeviceLost(f"adb push {local} failed: {one_line(result.stderr or result.stdout, last=True)}")

    def getprops(self) -> dict[str, str]:
        """All system properties in one call (`getprop` prints `[name]: [value]` lines)."""
        text = self.checked_shell("getprop", timeout=30)
        return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.MULTILINE))


def _kill_group(proc: subprocess.Popen) -> None:
    """Kills a process started with start_new_session=True together with its children."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.communicate()


def find_tool(explicit: str | None, env: str, name: str, sdk_subdir: str) -> str | None:
    """A tool from the flag, the environment variable, PATH, or the Android SDK."""
    for candidate in (explicit, os.environ.get(env)):
        if candidate:
            return candidate
    if found := shutil.which(name):
        return found
    for root in (os.environ.get("ANDROID_HOME"), os.environ.get("ANDROID_SDK_ROOT")):
        if root and (Path(root) / sdk_subdir / name).is_file():
            return str(Path(root) / sdk_subdir / name)
    return None


def list_devices(adb: Adb) -> list[tuple[str, str]]:
    """(serial, state) pairs from `adb devices -l`."""
    try:
        result = Adb(adb.adb).run(["devices", "-l"], timeout=60)
    except FileNotFoundError:
        raise UserError(f"adb not found at {adb.adb}: pass --adb PATH or set ADB") from None
    except PermissionError:
        raise UserError(f"{adb.adb} is not executable: pass --adb PATH or set ADB") from None
    if result.returncode != 0:
        raise UserError(f"'{adb.adb} devices' failed: {one_line(result.stderr, last=True) or 'exit ' + str(result.returncode)}")
    devices = []
    for line in result.stdout.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*")):
            continue
        serial, _, rest = line.strip().partition(" ") if "\t" not in line else line.strip().partition("\t")
        rest = rest.strip()
        state = "no permissions" if rest.startswith("no permissions") else (rest.split() or ["unknown"])[0]
        devices.append((serial.strip(), state))
    return devices


def choose_device(devices: list[tuple[str, str]], serial: str | None) -> str:
    """The serial to use, or a UserError saying what to do."""
    if not devices:
        raise UserError("no Android device found by adb: connect a phone with USB debugging enabled, "
                        "start an emulator, or pass --avd NAME")
    if serial is None:
        if len(devices) > 1:
            listing = ", ".join(f"{s} ({st})" for s, st in devices)
            raise UserError(f"several devices attached: {listing}; choose one with --serial SERIAL")
        serial, state = devices[0]
    else:
        states = dict(devices)
        if serial not in states:
            raise UserError(f"device {serial} not found; adb sees: " + ", ".join(s for s, _ in devices))
        state = states[serial]
    if state != "device":
        advice = DEVICE_STATE_ADVICE.get(state, f"is in state '{state}': wait until 'adb devices' says 'device', then run again")
        raise UserError(f"device {serial} {advice}")
    return serial


def elf_abi(path: Path) -> str:
    """The Android ABI of an ELF executable, read from its header's e_machine field."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise UserError(f"{path} is not an ELF executable (expected the benchmark_model binary for Android)")
    order = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], order)
    if machine not in ELF_MACHINE_ABI:
        raise UserError(f"{path} is an ELF binary for machine type {machine}, not an Android ABI (arm64, arm, x86_64, x86)")
    return ELF_MACHINE_ABI[machine]


def check_abi(props: dict[str, str], serial: str, binary_abi: str, binary: Path) -> str:
    """The device's ABI (`ro.product.cpu.abi`); UserError when the binary cannot run there.

    A 64-bit ARM device usually runs 32-bit ARM binaries too: `ro.product.cpu.abilist` says.
    """
    abi = props.get("ro.product.cpu.abi", "")
    supported = {abi, *filter(None, props.get("ro.product.cpu.abilist", "").split(","))}
    if binary_abi not in supported:
        raise UserError(f"{binary} is built for {binary_abi} but device {serial} is {abi or 'of unknown ABI'}: "
                        f"use the benchmark_model build for {abi or 'its ABI'} (see android_bench/run.sh --help)")
    return abi


def start_emulator(avd: str, adb: Adb, log_path: Path, boot_timeout: float) -> tuple[subprocess.Popen, str]:
    """Starts `emulator -avd AVD` headless; waits until it is a `device` with sys.boot_completed=1."""
    emulator = find_tool(None, "TFSPARSE_EMULATOR", "emulator", "emulator")
    if emulator is None:
        raise UserError("--avd needs the Android emulator: install it with sdkmanager 'emulator' "
                        "and set ANDROID_HOME (or put 'emulator' on PATH)")
    before = {s for s, _ in list_devices(adb)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    proc = subprocess.Popen([emulator, "-avd", avd, "-no-window", "-no-audio", "-no-boot-anim"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + boot_timeout
    serial = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"emulator -avd {avd} exited with status {proc.returncode}: see {log_path}")
        if serial is None:
            new = [s for s, st in list_devices(adb) if s.startswith("emulator-") and s not in before]
            serial = new[0] if new else None
        if serial is not None:
            probe = Adb(adb.adb, serial).shell("getprop", "sys.boot_completed", timeout=30)
            if probe.returncode == 0 and probe.stdout.strip() == "1":
                return proc, serial
        time.sleep(BOOT_POLL_S)
    stop_emulator(proc, Adb(adb.adb, serial) if serial else None)
    raise UserError(f"emulator -avd {avd} did not finish booting within {boot_timeout:g} s "
                    f"(see {log_path}); raise --boot-timeout")


def stop_emulator(proc: subprocess.Popen, adb: Adb | None) -> None:
    """Asks the emulator to quit (`adb emu kill`), then kills it if it has not within 30 s."""
    if adb is not None:
        try:
            adb.run(["emu", "kill"], timeout=30)
        except Exception:  # noqa: BLE001 - best effort, the process is killed below anyway
            pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
