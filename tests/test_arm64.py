"""tfsparse.arm64: stage caching (idempotent, resumable, locked) and host checks.

The real from-scratch provisioning is exercised by tests/test_bench.py; these tests drive
the same stage machinery with small stand-in builds so they take seconds.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from tfsparse import arm64
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


def _slow_build_in_process(base: str, log_path: str) -> None:
    def build(folder: Path):
        with open(log_path, "a") as log:
            log.write(f"build {os.getpid()}\n")
        time.sleep(2.0)
        (folder / "payload").write_text(str(os.getpid()))

    _stage(Path(base), build, log=lambda s: open(log_path, "a").write(f"{s}\n"))


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


def test_the_mirror_comes_from_the_hosts_apt_sources():
    uri, _ = arm64.debian_mirror()
    own = " ".join(Path(p).read_text() for p in
                   [*map(str, Path("/etc/apt/sources.list.d").glob("*.sources")), "/etc/apt/sources.list"]
                   if Path(p).exists())
    assert uri in own and "security" not in uri
