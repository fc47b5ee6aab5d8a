"""tfsparse.benchmarking.arm64: stage caching (idempotent, resumable, locked), host checks, and the
apt-source parser that picks the Debian mirror.

The real from-scratch provisioning is exercised by tests/test_bench.py; these tests drive
the same stage machinery with small stand-in builds so they take seconds, and feed the
parser constructed apt folders, so they mean the same on any host.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from tfsparse.benchmarking import arm64
from tfsparse.cli import UserError


def _stage(base: Path, build, log=lambda s: None) -> Path:
    built: list = []
    with arm64._locked(base / ".lock", log):
        return arm64._stage(base / "thing", build, "thing", log, built)


def test_a_complete_stage_is_built_once(tmp_path):
    calls = []

    def build(folder: Path):
        calls.append(folder)
        (folder / "payload").write_text("ok")

    first = _stage(tmp_path, build)
    second = _stage(tmp_path, build)
    assert first == second == tmp_path / "thing"
    assert len(calls) == 1 and (first / "payload").read_text() == "ok"
    assert (first / arm64.MARKER).exists()
    assert calls[0] != first  # it was built elsewhere and renamed into place


def test_an_interrupted_stage_leaves_nothing_and_is_rebuilt(tmp_path):
    def interrupted(folder: Path):
        (folder / "half").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _stage(tmp_path, interrupted)
    assert not (tmp_path / "thing").exists()
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]  # no temporary left behind

    # A run killed outright (SIGKILL) leaves its build and download folders behind.
    (tmp_path / ".thing.tmp1234").mkdir()
    (tmp_path / ".thing.tmp1234.work.5678").mkdir()
    # A folder without marker (e.g. killed mid-rename by an older version) is not trusted.
    (tmp_path / "thing").mkdir()
    (tmp_path / "thing" / "stale").write_text("x")
    done = _stage(tmp_path, lambda f: (f / "payload").write_text("ok"))
    assert sorted(p.name for p in done.iterdir()) == [arm64.MARKER, "payload"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "thing"]


def _append(log_path: str, line: str) -> None:
    with open(log_path, "a") as log:
        log.write(f"{line}\n")


def _slow_build_in_process(base: str, log_path: str) -> None:
    def build(folder: Path):
        _append(log_path, f"build {os.getpid()}")
        # Hold the lock until the other run has tried to take it, so the two runs overlap on any
        # machine (a fixed 2 s sleep did not once the second process started late: it then found
        # the stage complete and never waited). A second "build" line means the lock let it in:
        # stop waiting, the assertions below fail. The deadline only bounds a broken run.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = Path(log_path).read_text().splitlines()
            if any("waiting for another run" in line for line in lines) or \
                    sum(line.startswith("build ") for line in lines) > 1:
                break
            time.sleep(0.02)
        (folder / "payload").write_text(str(os.getpid()))

    _stage(Path(base), build, log=lambda s: _append(log_path, s))


def test_two_runs_at_once_build_a_stage_once(tmp_path):
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_slow_build_in_process, args=(str(tmp_path), str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    lines = log.read_text().splitlines()
    assert sum(line.startswith("build ") for line in lines) == 1, lines
    assert any("waiting for another run" in line for line in lines), lines


def _fake_qemu(tmp_path: Path, version: str) -> Path:
    path = tmp_path / f"qemu-{version}"
    path.write_text(f"#!/bin/sh\necho 'qemu-aarch64 version {version} (Debian)'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_user_qemu_must_be_version_8_or_newer(tmp_path):
    with pytest.raises(UserError, match=r"qemu 7\.x; XNNPACK needs qemu >= 8"):
        arm64._check_qemu(_fake_qemu(tmp_path, "7.2.0"))
    assert arm64._check_qemu(_fake_qemu(tmp_path, "10.0.3")).exists()
    with pytest.raises(UserError, match="does not run"):
        arm64._check_qemu(tmp_path / "missing")


def test_user_root_must_hold_python311(tmp_path):
    with pytest.raises(UserError, match="no usr/bin/python3.11"):
        arm64.provision(arm64_root=tmp_path, qemu=_fake_qemu(tmp_path, "10.0.3"))


def test_unsupported_host_gets_one_line_naming_what_is_missing(monkeypatch):
    monkeypatch.setattr(arm64.platform, "machine", lambda: "aarch64")
    with pytest.raises(UserError, match="needs an x86-64 Linux host, this is Linux aarch64"):
        arm64._check_host(needs_apt=True)
    monkeypatch.setattr(arm64.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(arm64.shutil, "which", lambda tool: None if tool == "dpkg-deb" else "/usr/bin/" + tool)
    with pytest.raises(UserError, match="needs dpkg-deb"):
        arm64._check_host(needs_apt=True)
    arm64._check_host(needs_apt=False)  # bring-your-own qemu and root: no apt needed


KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SECURITY_822 = f"""\
Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: {KEYRING}
"""


@pytest.mark.parametrize("files, expected", [
    pytest.param(  # Debian 12's default: the security stanza first, the mirror second
        {"sources.list.d/debian.sources": SECURITY_822 + f"""
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://ftp.de.debian.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: {KEYRING}
"""}, ("http://ftp.de.debian.org/debian", KEYRING), id="deb822"),
    pytest.param(  # disabled, source-only, updates-only and non-Debian stanzas are not the mirror
        {"sources.list.d/a.sources": """\
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Enabled: no

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://updates.example/debian
Suites: bookworm-updates bookworm-backports

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
""",
         "sources.list.d/b.sources": """\
Types: deb deb-src
URIs: http://mirror.example/debian
Suites: trixie
Components: main
"""}, ("http://mirror.example/debian", None), id="deb822-skips"),
    pytest.param(  # a key embedded in the stanza is not a keyring path
        {"sources.list.d/debian.sources": """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD3K87ZM18gzyQZJD+w
 -----END PGP PUBLIC KEY BLOCK-----
"""}, ("http://deb.debian.org/debian", None), id="deb822-embedded-key"),
    pytest.param(  # one-line format, with options, comments, deb-src and security lines
        {"sources.list": """\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/etc/apt/keyrings/mirror.gpg] http://ftp.fr.debian.org/debian/ bookworm main contrib
deb http://second.example/debian bookworm main
"""}, ("http://ftp.fr.debian.org/debian", "/etc/apt/keyrings/mirror.gpg"), id="sources.list"),
    pytest.param(  # a .list in sources.list.d, no options
        {"sources.list": "deb http://archive.ubuntu.com/ubuntu jammy main\n",
         "sources.list.d/debian.list": "  deb http://deb.debian.org/debian bookworm main\n"},
        ("http://deb.debian.org/debian", None), id="list.d"),
    pytest.param(  # deb822 files are read before one-line ones
        {"sources.list": "deb http://one-line.example/debian bookworm main\n",
         "sources.list.d/debian.sources": "Types: deb\nURIs: http://deb822.example/debian\nSuites: bookworm\n"},
        ("http://deb822.example/debian", None), id="deb822-first"),
])
def test_the_mirror_is_read_from_apt_sources(tmp_path, files, expected):
    """Catches a parser that misreads either apt source format (takes a disabled, source-only,
    security/updates or non-Debian entry, keeps a trailing slash, loses or invents Signed-By).
    Constructed files with known answers, so it means the same on any host."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert arm64.debian_mirror(tmp_path) == expected


@pytest.mark.parametrize("files", [
    {},  # no apt configuration at all
    {"sources.list": "deb http://archive.ubuntu.com/ubuntu jammy main\n",
     "sources.list.d/debian.sources": SECURITY_822},
])
def test_no_debian_mirror_is_a_one_line_error_naming_the_folder(tmp_path, files):
    """Catches a parser that guesses a mirror (or crashes) when the host has no Debian source."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(UserError) as error:
        arm64.debian_mirror(tmp_path)
    assert str(error.value).startswith(f"no Debian mirror in {tmp_path}/sources.list(.d)")
    assert "\n" not in str(error.value)
