"""Provisioning of an emulated arm64 LiteRT runtime on an x86-64 Linux host.

Why: XNNPACK never takes its sparse (SpMM) path on x86 CPUs with AVX, so speed evidence
for sparse files must come from arm64. qemu-user running the *real* aarch64 LiteRT wheel
executes the same XNNPACK code a phone runs (see docs: arm64 emulation notes).

Three stages, each cached under `cache_dir("arm64")` and built only once:

1. `qemu/`      - `qemu-aarch64` (>= 8; 7.2 segfaults when XNNPACK reads /proc/cpuinfo),
                  taken from Debian 13 "trixie"'s static `qemu-user` package.
2. `userland-bookworm/` - an arm64 Debian 12 userland with Python 3.11 (the ABI of the
                  wheels): the arm64 `python3.11` + `libstdc++6` dependency closure that apt
                  resolves for an empty system, unpacked with `dpkg-deb -x` (~15 MB of
                  .debs; measured ~5 s, versus minutes and 235 MB for debootstrap).
3. `litert-<version>/` - the aarch64 wheels of ai-edge-litert and its dependencies,
                  unzipped into a folder put on PYTHONPATH.

Every apt call uses private lists/cache/status folders and a temporary source list whose
mirror is read from the machine's own apt sources; nothing is installed system-wide and
nothing is registered with binfmt (qemu is run explicitly with QEMU_LD_PREFIX).

Safe against concurrent runs (one `fcntl.flock` on `arm64/.lock`), resumable (a stage is
built in a temporary folder and renamed into place with a `.complete` marker; leftovers of
an interrupted build are removed on the next run), idempotent (a complete stage is skipped).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from tfsparse.errors import UserError, unknown_name
from tfsparse.paths import cache_dir

MARKER = ".complete"
QEMU_SUITE = "trixie"       # qemu-user 10.x, a static build (bookworm's 7.2 is too old)
USERLAND_SUITE = "bookworm"  # Python 3.11, matching the cp311 wheels
USERLAND_PACKAGES = ("python3.11", "libstdc++6")  # libstdc++: LiteRT's C++ extension
MIN_QEMU_MAJOR = 8
# manylinux tags the aarch64 LiteRT/numpy wheels are published under (glibc 2.36 here).
WHEEL_PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64",
                   "manylinux_2_17_aarch64", "manylinux2014_aarch64")

Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    print(f"[arm64] {message}", file=sys.stderr, flush=True)


DEFAULT_CPU = "cortex-a76"


@dataclass(frozen=True)
class Runtime:
    """How to start the emulated Python: `argv() + [script, args...]` with `env()`."""

    qemu: Path
    root: Path
    site: Path
    litert_version: str
    # The emulated CPU. qemu's default ("max") offers SVE and SME, and LiteRT then runs its dense
    # fp32 kernels on SME, which phones other than the newest lack (measured: ~1/4 of the
    # instructions of the NEON path for a dense twin). A Cortex-A76 (NEON, no SVE) is the core of
    # most phones in use, and pinning it keeps results comparable across qemu versions.
    cpu: str = DEFAULT_CPU

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / "python3.11"

    def argv(self) -> list[str]:
        return [str(self.qemu), "-cpu", self.cpu, str(self.python)]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "QEMU_", "LD_"))}  # host settings mean nothing there
        env.update(QEMU_LD_PREFIX=str(self.root), PYTHONPATH=str(self.site),
                   PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
        return env


def _check_cpu(qemu: Path, cpu: str) -> None:
    """A CPU model this qemu knows (`-cpu help`), so a typo is one line, not a failed run per model."""
    try:
        listing = subprocess.run([str(qemu), "-cpu", "help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"cannot ask {qemu} for its CPU models: {e}") from None
    known = {line.split()[0] for line in listing.splitlines()[1:] if line.strip()}
    name = cpu.split(",", 1)[0]
    if known and name not in known:
        raise unknown_name("--cpu model", name, known)


def host_litert_version() -> str:
    """The ai-edge-litert version installed on the host (what the project ships with)."""
    try:
        return importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        raise UserError("ai-edge-litert is not installed; pass --litert-version") from None


def provision(litert_version: str | None = None, qemu: str | Path | None = None,
              arm64_root: str | Path | None = None, log: Log = _stderr_log, cpu: str = DEFAULT_CPU) -> Runtime:
    """Returns a ready Runtime, building whatever stage is missing from the cache.

    `qemu` / `arm64_root` are user-provided replacements for stages 1 and 2 (checked,
    never modified). Raises UserError (one line) on an unsupported host.
    """
    if not re.fullmatch(r"[0-9A-Za-z.,=_+-]+", cpu):
        raise UserError(f"bad --cpu {cpu!r}")
    version = litert_version or host_litert_version()
    if not re.fullmatch(r"[0-9A-Za-z.+!-]+", version):
        raise UserError(f"bad --litert-version {version!r}")
    qemu_path = _check_qemu(Path(qemu)) if qemu else None
    root_path = _check_root(Path(arm64_root)) if arm64_root else None
    needs_apt = qemu_path is None or root_path is None
    _check_host(needs_apt)

    base = cache_dir("arm64")
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    built = []
    with _locked(base / ".lock", log):
        if qemu_path is None:
            stage = _stage(base / "qemu", lambda d: _build_qemu(d, log), "qemu-user", log, built)
            qemu_path = _check_qemu(stage / "usr" / "bin" / "qemu-aarch64")
        if root_path is None:
            root_path = _stage(base / f"userland-{USERLAND_SUITE}",
                               lambda d: _build_userland(d, log), "arm64 Python 3.11 userland", log, built)
        site = _stage(base / f"litert-{version}", lambda d: _build_site(d, version, log),
                      f"aarch64 wheels of ai-edge-litert {version}", log, built)
    if built:
        log(f"provisioned {', '.join(built)} in {time.monotonic() - started:.1f} s under {base}")
    _check_cpu(qemu_path, cpu)
    return Runtime(qemu=qemu_path, root=root_path, site=site, litert_version=version, cpu=cpu)


# -- host checks -------------------------------------------------------------------------

def _check_host(needs_apt: bool) -> None:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise UserError(f"--target arm64-emu needs an x86-64 Linux host, this is "
                        f"{platform.system()} {platform.machine()} (on an arm64 host use --target host)")
    missing = [tool for tool in (("apt-get", "dpkg-deb") if needs_apt else ()) if shutil.which(tool) is None]
    if missing:
        raise UserError(f"--target arm64-emu needs {' and '.join(missing)} (a Debian/Ubuntu host) "
                        f"or both --qemu and --arm64-root")


def _check_qemu(path: Path) -> Path:
    """qemu-aarch64 must run and be version >= 8 (7.2 crashes in XNNPACK's CPU detection)."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"--qemu {path} does not run: {e}") from None
    match = re.search(r"version (\d+)\.", out)
    if not match:
        raise UserError(f"--qemu {path} is not qemu-aarch64 (no version in --version output)")
    if int(match.group(1)) < MIN_QEMU_MAJOR:
        raise UserError(f"--qemu {path} is qemu {match.group(1)}.x; XNNPACK needs qemu >= {MIN_QEMU_MAJOR}")
    return path.resolve()


def _check_root(path: Path) -> Path:
    if not (path / "usr" / "bin" / "python3.11").exists():
        raise UserError(f"--arm64-root {path} has no usr/bin/python3.11 (an arm64 Debian 12 userland)")
    return path.resolve()


# -- stages ------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(lock_file: Path, log: Log) -> Iterator[None]:
    with open(lock_file, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another run to finish provisioning ({lock_file})")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stage(final: Path, build: Callable[[Path], None], what: str, log: Log, built: list) -> Path:
    """Builds `final` with `build(tmp)` unless complete; caller holds the lock."""
    if (final / MARKER).exists():
        return final
    for leftover in final.parent.glob(f".{final.name}.tmp*"):  # an interrupted earlier build
        shutil.rmtree(leftover, ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)  # a stage without marker was never completed
    log(f"provisioning {what} ...")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp", dir=final.parent))
    try:
        build(tmp)
        (tmp / MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"  {what}: done in {time.monotonic() - started:.1f} s")
    built.append(what)
    return final


def _scratch(dest: Path) -> tempfile.TemporaryDirectory:
    """Downloads go beside the stage, named after it, so a killed run's leftovers are
    matched and removed by the next run's `_stage` (and never renamed into the cache)."""
    return tempfile.TemporaryDirectory(dir=dest.parent, prefix=f"{dest.name}.work.")


def _build_qemu(dest: Path, log: Log) -> None:
    with _scratch(dest) as work:
        apt = _PrivateApt(Path(work), QEMU_SUITE, arch=None)
        deb = apt.download("qemu-user")
        log(f"  unpacking qemu-aarch64 from {deb.name}")
        # Only the one binary: the package holds ~30 emulators (465 MB unpacked).
        _run(f"dpkg-deb --fsys-tarfile {_q(deb)} | tar -x -C {_q(dest)} ./usr/bin/qemu-aarch64", shell=True)


def _build_userland(dest: Path, log: Log) -> None:
    with _scratch(dest) as work:
        apt = _PrivateApt(Path(work), USERLAND_SUITE, arch="arm64")
        debs = apt.download_closure(USERLAND_PACKAGES)
        log(f"  unpacking {len(debs)} arm64 packages")
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(dest)])
    if not (dest / "usr" / "bin" / "python3.11").exists():
        raise UserError("the arm64 userland has no usr/bin/python3.11 after unpacking")


def _build_site(dest: Path, version: str, log: Log) -> None:
    with _scratch(dest) as wheels:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
               "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
               "-d", wheels, f"ai-edge-litert=={version}"]
        for tag in WHEEL_PLATFORMS:
            cmd += ["--platform", tag]
        log(f"  pip download ai-edge-litert=={version} (aarch64)")
        _run(cmd, what=f"no aarch64 wheels for ai-edge-litert=={version} (is the version published?)")
        names = sorted(glob.glob(os.path.join(wheels, "*.whl")))
        log(f"  unzipping {len(names)} wheels: {', '.join(Path(n).name.split('-')[0] for n in names)}")
        for name in names:
            with zipfile.ZipFile(name) as whl:
                whl.extractall(dest)


class _PrivateApt:
    """apt-get with its own sources, lists, cache and (empty) dpkg status in `work`."""

    def __init__(self, work: Path, suite: str, arch: str | None):
        self.work = work
        mirror, signed_by = debian_mirror()
        options = f"[signed-by={signed_by}] " if signed_by else ""
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "cache" / "archives" / "partial").mkdir(parents=True)
        (work / "parts").mkdir()
        (work / "sources.list").write_text(f"deb {options}{mirror} {suite} main\n")
        (work / "status").touch()
        self.options = [
            "-o", f"Dir::Etc::SourceList={work / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={work / 'parts'}",
            "-o", f"Dir::State::Lists={work / 'lists'}",
            "-o", f"Dir::Cache={work / 'cache'}",
            "-o", f"Dir::State::status={work / 'status'}",  # empty: resolve the full closure
            "-o", "Debug::NoLocking=1",          # private dirs: nothing shared to lock
            "-o", "APT::Sandbox::User=root",     # _apt cannot write into our cache
            "-o", "Acquire::Languages=none",
        ]
        if arch:
            self.options += ["-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures::={arch}"]
        _run(["apt-get", "-q", *self.options, "update"],
             what=f"apt-get update for {mirror} {suite} failed")

    def download(self, package: str) -> Path:
        out = self.work / "debs"
        out.mkdir(exist_ok=True)
        _run(["apt-get", "-q", *self.options, "download", package], cwd=out,
             what=f"apt-get download {package} failed")
        return next(out.glob(f"{package}_*.deb"))

    def download_closure(self, packages: tuple[str, ...]) -> list[Path]:
        _run(["apt-get", "-q", "-y", *self.options, "install", "--download-only",
              "--no-install-recommends", *packages], what=f"apt-get could not fetch {' '.join(packages)}")
        return sorted((self.work / "cache" / "archives").glob("*.deb"))


def debian_mirror(apt_dir: str | Path = "/etc/apt") -> tuple[str, str | None]:
    """(mirror URI, Signed-By keyring or None) of the host's main Debian apt source.

    Read from deb822 `<apt_dir>/sources.list.d/*.sources`, then one-line `sources.list` and
    `sources.list.d/*.list` files; the first enabled `deb` entry wins. Security and update
    suites are skipped (they do not carry other releases). A Signed-By that is not a file
    (a key embedded in the stanza) gives None: apt's trusted keyrings then apply. Nothing
    found is a one-line UserError: the mirror is never guessed (a host without a Debian
    source would also lack the Debian archive keys).
    """
    apt = Path(apt_dir)
    entries: list[tuple[str, list[str], str | None]] = []
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", _read(path)):
            # [ \t]*, not \s*: an empty first line (a multi-line value) must not take the next line.
            fields = dict(re.findall(r"^([\w-]+):[ \t]*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                for uri in fields.get("URIs", "").split():
                    entries.append((uri, fields.get("Suites", "").split(), fields.get("Signed-By") or None))
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        for line in _read(path).splitlines():
            match = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match:
                signed = re.search(r"signed-by=(\S+?)[\s\]]", match.group(1) or "")
                entries.append((match.group(2), [match.group(3)], signed.group(1) if signed else None))
    for uri, suites, signed_by in entries:
        if "debian" in uri and "security" not in uri and not all("-" in s for s in suites):
            return uri.rstrip("/"), signed_by
    raise UserError(f"no Debian mirror in {apt}/sources.list(.d); --target arm64-emu fetches "
                    "Debian packages (or pass both --qemu and --arm64-root)")


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _q(path: Path) -> str:
    import shlex
    return shlex.quote(str(path))


def _run(cmd, what: str | None = None, **kwargs) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["?"])[-1]
        raise UserError(f"{what or cmd}: {detail}")
