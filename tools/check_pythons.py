"""`make check-pythons`: run `make test` on a fresh Debian 13 (trixie, amd64) with its Python 3.13.

Why: CI machines here have only Python 3.11, and "supports 3.13" means nothing until the README's
`make test` has passed on a machine whose only `python3` is 3.13. This script builds such a
machine as a chroot and runs the README's command in it from a clean copy of the repository.

- The root is made by `debootstrap --variant=minbase` from the host's own Debian mirror (read
  the way the arm64 emulator reads it) and cached under `~/.cache/tfsparse/check-pythons/`;
  later runs reuse it. Nothing is installed on the host except debootstrap itself.
- Each run starts like a fresh machine: the root's `~/.cache` (pip, data, arm64 emulator), its
  /tmp and its previous repository copy are removed, then `git archive HEAD` is unpacked into
  it (what is committed is what is tested). One run at a time (a lock beside the root).
- /proc, /sys and /dev are bind-mounted in a private mount namespace (`unshare -m`): they are
  unmounted at the end, also on failure, and could not outlive a killed run anyway.
- Result: one line on stdout and a JSON file (Python version, tests passed/failed, seconds).
  The arm64 emulator the tests provision inside the root must run from a host Python 3.13:
  the JSON lists the outcome of each test run on it and whether its userland was built.

Needs root (debootstrap, chroot, mount), an x86-64 Debian/Ubuntu host with apt, and network
access to the Debian mirror and PyPI.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a plain script: tfsparse.benchmarking.arm64 / paths are stdlib-only

from tfsparse.benchmarking.arm64 import debian_mirror  # noqa: E402
from tfsparse.paths import cache_dir  # noqa: E402

# What a user's fresh machine has before typing the README's two commands; ca-certificates
# because minbase has none and pip cannot reach PyPI over TLS without it.
ROOT_PACKAGES = ("python3", "python3-venv", "make", "ca-certificates")
SUITES = ("trixie",)  # Debian 13, whose only python3 is 3.13: the newest Python supported
MARKER = ".complete"
NS_ENV = "TFSPARSE_CHECK_PYTHONS_NS"  # set once we run inside our private mount namespace
# The tests that run models on the emulated arm64 runtime (from a host Python 3.13 here):
# all of test_xnnpack_runtime, and these by name. The JSON lists their outcomes.
ARM64_TESTS = ("test_xnnpack_runtime::", "test_arm64_emu_runs_sparse_faster",
               "test_outputs_that_differ_from_the_host", "test_runs_on_the_emulated_arm64_runtime")


class Failure(Exception):
    """A one-line error for the user."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make check-pythons", description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="trixie", choices=SUITES,
                        help="Debian suite of the root (default trixie = Debian 13, Python 3.13)")
    parser.add_argument("--json", default=str(REPO / "reports" / "check_pythons" / "debian-trixie.json"),
                        help="where to write the result (default reports/check_pythons/debian-trixie.json)")
    parser.add_argument("--rebuild-root", action="store_true", help="debootstrap again even if cached")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except Failure as e:
        print(f"check-pythons: error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    if os.geteuid() != 0:
        raise Failure("needs root (debootstrap, chroot and bind mounts)")
    if os.uname().machine != "x86_64":
        raise Failure(f"builds an amd64 root, this host is {os.uname().machine}")
    if os.environ.get(NS_ENV) != "1":
        # Re-run inside a private mount namespace: mounts made there never reach the host
        # and disappear with the namespace even if this run is killed before unmounting.
        if shutil.which("unshare") is None:
            raise Failure("needs unshare (util-linux)")
        env = dict(os.environ, **{NS_ENV: "1"})
        cmd = ["unshare", "--mount", "--propagation", "private", sys.executable, __file__, *sys.argv[1:]]
        return subprocess.run(cmd, env=env).returncode

    base = cache_dir("check-pythons")
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Failure(f"another check-pythons run is using {base}") from None
        return _run_locked(args)


def _run_locked(args) -> int:
    started = time.monotonic()
    commit = _git("rev-parse", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no"):
        print("check-pythons: note: uncommitted changes are not tested (git archive HEAD)", flush=True)
    root, root_seconds = ensure_root(args.suite, args.rebuild_root)
    log_path = Path(args.json).with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    junit_inside = "/work/junit.xml"

    fresh_copy(root, commit)
    with mounted(root):
        python = _chroot_out(root, ["python3", "-c", "import platform; print(platform.python_version())"])
        debian = _chroot_out(root, ["cat", "/etc/debian_version"])
        print(f"check-pythons: Debian {debian} root at {root}, Python {python}, commit {commit[:12]}", flush=True)
        print(f"check-pythons: make test (log: {log_path})", flush=True)
        t0 = time.monotonic()
        # -ra: the skip reasons land in the log; junit: per-test outcomes for the JSON.
        rc = _chroot_stream(root, "cd /work/tfsparse && make test", log_path,
                            extra_env={"PYTEST_ADDOPTS": f"--junitxml={junit_inside}"})
        make_seconds = time.monotonic() - t0
        venv_python = _chroot_out(root, ["/work/tfsparse/.venv/bin/python", "-c",
                                         "import platform; print(platform.python_version())"], check=False)

    counts, arm64_tests = parse_junit(root / junit_inside.lstrip("/"))
    userland = root / "root" / ".cache" / "tfsparse" / "arm64" / "userland-bookworm"
    result = {
        "command": "make check-pythons",
        "debian": f"{args.suite} {debian}",
        "python": python,
        "venv_python": venv_python or None,
        "commit": commit,
        "make_test_returncode": rc,
        **counts,
        "arm64_emulated_tests": arm64_tests,
        "arm64_userland_built": (userland / MARKER).exists(),
        "arm64_python": "3.11 (Debian 12 arm64, under qemu)" if (userland / "usr/bin/python3.11").exists() else None,
        "make_test_seconds": round(make_seconds, 1),
        "root_build_seconds": round(root_seconds, 1),  # 0 when the cached root was reused
        "seconds": round(time.monotonic() - started, 1),
        "host_cores": os.cpu_count(),
        "log": str(log_path),
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    status = "passed" if rc == 0 else f"FAILED (make test exit {rc})"
    arm64_ok = sum(outcome == "passed" for outcome in arm64_tests.values())
    print(f"check-pythons: {status}: Debian {debian}, Python {python}: {counts['passed']} passed, "
          f"{counts['failed']} failed, {counts['errors']} errors, {counts['skipped']} skipped "
          f"({arm64_ok}/{len(arm64_tests)} emulated-arm64 tests passed); "
          f"make test {_mmss(make_seconds)}, total {_mmss(result['seconds'])} -> {args.json}", flush=True)
    return 0 if rc == 0 else 1


# -- the root ----------------------------------------------------------------------------

def ensure_root(suite: str, rebuild: bool) -> tuple[Path, float]:
    base = cache_dir("check-pythons")
    root = base / f"debian-{suite}-amd64"
    if (root / MARKER).exists() and not rebuild:
        print(f"check-pythons: reusing {root}", flush=True)
        return root, 0.0
    ensure_debootstrap()
    mirror, _ = debian_mirror()
    base.mkdir(parents=True, exist_ok=True)
    for leftover in base.glob(f".{root.name}.tmp*"):  # an interrupted earlier build
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp", dir=base))
    print(f"check-pythons: debootstrap {suite} from {mirror} into {root} (a few minutes) ...", flush=True)
    t0 = time.monotonic()
    cmd = ["debootstrap", "--arch=amd64", "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}",
           suite, str(tmp), mirror]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        (base / f"debootstrap-{suite}.log").write_text(proc.stdout + proc.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        last = (proc.stderr.strip() or proc.stdout.strip() or "?").splitlines()[-1]
        raise Failure(f"debootstrap {suite} failed: {last} (log: {base / f'debootstrap-{suite}.log'})")
    (tmp / MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    if root.exists():
        shutil.rmtree(root)
    os.rename(tmp, root)
    seconds = time.monotonic() - t0
    print(f"check-pythons: root built in {_mmss(seconds)}", flush=True)
    return root, seconds


def ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    if shutil.which("apt-get") is None:
        raise Failure("debootstrap is missing and there is no apt-get to install it")
    print("check-pythons: installing debootstrap (apt-get update, apt-get install)", flush=True)
    # update's exit status is ignored: an unreachable third-party source fails it while the
    # Debian lists that carry debootstrap were refreshed; the install below is what counts.
    subprocess.run(["apt-get", "update", "-q"], capture_output=True)
    # Without recommends (arch-test, gnupg): debootstrap and, if missing, its dependency wget.
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not shutil.which("debootstrap"):
        raise Failure(f"apt-get install debootstrap failed: {(proc.stderr.strip() or '?').splitlines()[-1]}")


def fresh_copy(root: Path, commit: str) -> None:
    """The committed tree at /work/tfsparse, and none of a previous run's caches."""
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(root / "root" / ".cache", ignore_errors=True)
    for leftover in (root / "tmp").iterdir():  # pytest's and the tests' temporary folders
        shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
    (work / "tfsparse").mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(work / "tfsparse")], input=archive, check=True)
    # The root must resolve PyPI and the mirror the way the host does.
    resolv = root / "etc" / "resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    shutil.copyfile("/etc/resolv.conf", resolv)
    _trust_host_cas(root)


def _trust_host_cas(root: Path) -> None:
    """Locally added CAs of the host (e.g. a TLS-inspecting egress proxy) are trusted in the
    root too: without them pip in the root cannot verify PyPI on such a network."""
    local = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if not local:
        return
    dest = root / "usr" / "local" / "share" / "ca-certificates"
    dest.mkdir(parents=True, exist_ok=True)
    for crt in local:
        shutil.copyfile(crt, dest / crt.name)
    subprocess.run(["chroot", str(root), "update-ca-certificates"], capture_output=True, check=True)


class mounted:
    """/proc, /sys, /dev bound into the root; unmounted on exit (also on an exception)."""

    def __init__(self, root: Path):
        self.root = root
        self.done: list[Path] = []

    def __enter__(self):
        try:
            for src in ("/proc", "/sys", "/dev"):
                target = self.root / src.lstrip("/")
                target.mkdir(exist_ok=True)
                # --rbind: /dev/pts and /dev/shm (multiprocessing's semaphores) come along.
                subprocess.run(["mount", "--rbind", src, str(target)], check=True)
                self.done.append(target)
                subprocess.run(["mount", "--make-rslave", str(target)], check=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for target in reversed(self.done):
            if subprocess.run(["umount", "-R", str(target)], capture_output=True).returncode != 0:
                # busy (a leftover process): detach now, the kernel frees it when unused
                subprocess.run(["umount", "-R", "-l", str(target)], capture_output=True)
        self.done.clear()


def _env(extra: dict[str, str] | None = None) -> list[str]:
    """A login-like environment for the root, not the host's (no host venv, no host pip config)."""
    env = {"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8", "TERM": "dumb", "DEBIAN_FRONTEND": "noninteractive"}
    env.update(extra or {})
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items())]


def _chroot_out(root: Path, cmd: list[str], check: bool = True) -> str:
    proc = subprocess.run(["chroot", str(root), *_env(), *cmd], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise Failure(f"{' '.join(cmd)} in the root failed: {(proc.stderr.strip() or '?').splitlines()[-1]}")
    return proc.stdout.strip()


def _chroot_stream(root: Path, script: str, log_path: Path, extra_env: dict[str, str]) -> int:
    """Runs `sh -c script` in the root, its output both on our stdout and in `log_path`.

    Copied as it comes, not by line: pytest -q prints its progress dots without newlines."""
    cmd = ["chroot", str(root), *_env(extra_env), "sh", "-c", script]
    with open(log_path, "wb") as log, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                                       stderr=subprocess.STDOUT) as proc:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            for out in (sys.stdout.buffer, log):
                out.write(chunk)
                out.flush()
        return proc.wait()


def parse_junit(path: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Totals by outcome, and the outcome of each emulated-arm64 test ("classname::name")."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    arm64: dict[str, str] = {}
    if not path.exists():  # make test stopped before pytest ran
        return counts, arm64
    for case in ET.parse(path).iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "errors", "skipped": "skipped"}[child.tag]
                break
        counts[outcome] += 1
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        if any(key in test_id for key in ARM64_TESTS):
            arm64[test_id] = outcome
    return counts, arm64


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


if __name__ == "__main__":
    sys.exit(main())
