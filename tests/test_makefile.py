"""The Makefile's choice of Python (issue 17): newest working 3.13/3.12/3.11, then python3.

Runs the real Makefile with PATH pointing at stand-in `python3.X` scripts, because which
Pythons a machine has cannot be changed from a test; the stand-ins answer only the
Makefile's own questions (supported? ensurepip? major.minor?) and a stand-in `apt-get`
records what it was asked to install.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs make")

# Version-check code contains "version_info[:2] not in"; the venv-package code prints "%d.%d".
FAKE_PYTHON = """#!/bin/sh
case "$2" in
  *"not in"*) exit {supported} ;;
  *ensurepip*) exit {has_ensurepip} ;;
  *'%d.%d'*) echo {version}; exit 0 ;;
esac
[ "$1" = -V ] && echo "Python {version}.0" && exit 0
echo "fake python {version}: $*" >> "{log}"
exit 3
"""


def project(tmp_path: Path, pythons: dict[str, tuple[str, bool]], has_ensurepip: bool = True) -> tuple[Path, Path]:
    """A copy of Makefile + pyproject and a bin folder with the given stand-ins:
    {command name: (version, runs)}; a Python that does not run is a failing shim."""
    work = tmp_path / "proj"
    work.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name, (version, runs) in pythons.items():
        supported = 0 if runs and version in ("3.11", "3.12", "3.13") else 1
        script = FAKE_PYTHON.format(supported=supported, has_ensurepip=0 if has_ensurepip else 1,
                                    version=version, log=log) if runs else "#!/bin/sh\nexit 127\n"
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> "{log}"\n')
    (bin_dir / "apt-get").chmod(0o755)
    return work, bin_dir


def make(work: Path, bin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "--no-print-directory", *args], cwd=work, capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "HOME": str(work)})


def chosen(work: Path, bin_dir: Path) -> str:
    out = make(work, bin_dir, "-pn", "install").stdout
    line = next(line for line in out.splitlines() if line.startswith("PYTHON :="))
    return Path(line.split(":=", 1)[1].strip()).name if line.split(":=", 1)[1].strip() else ""


@pytest.mark.parametrize("pythons, expected", [
    ({"python3.11": ("3.11", True), "python3.13": ("3.13", True), "python3": ("3.11", True)}, "python3.13"),
    ({"python3.12": ("3.12", True), "python3": ("3.12", True)}, "python3.12"),
    ({"python3": ("3.13", True)}, "python3"),
    # pyenv: shims for every installed version, only the selected one runs
    ({"python3.13": ("3.13", False), "python3.12": ("3.12", False), "python3.11": ("3.11", True)}, "python3.11"),
    ({"python3": ("3.14", True), "python3.10": ("3.10", True)}, ""),
])
def test_newest_working_supported_python_is_chosen(tmp_path, pythons, expected):
    work, bin_dir = project(tmp_path, pythons)
    assert chosen(work, bin_dir) == expected


@pytest.mark.parametrize("pythons, args, named", [
    ({"python3": ("3.14", True)}, [], "none of python3.13 python3.12 python3.11 python3 on PATH is one"),
    ({}, [], "none of python3.13 python3.12 python3.11 python3 on PATH is one"),
    ({"python3.10": ("3.10", True)}, ["PYTHON=python3.10"], "PYTHON=python3.10 is Python 3.10.0"),
])
def test_no_supported_python_is_one_line(tmp_path, pythons, args, named):
    work, bin_dir = project(tmp_path, pythons)
    proc = make(work, bin_dir, "test", *args)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"Makefile:{proc.stderr.split(':')[1]}: *** tfsparse needs Python 3.11, 3.12 or 3.13 "
        f"(TensorFlow 2.21 has wheels for no other): {named}.  Stop."]
    assert not (tmp_path / "calls.log").exists()  # nothing installed, no venv attempted


def test_venv_package_follows_the_chosen_python(tmp_path):
    work, bin_dir = project(tmp_path, {"python3.12": ("3.12", True)}, has_ensurepip=False)
    make(work, bin_dir, "install")  # stops at `-m venv` (the stand-in cannot make one)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0] == "apt-get install -y -q python3.12-venv"
    assert "fake python 3.12: -m venv .venv" in calls


def _pipeline_argv(target: str, *make_args: str) -> list[str]:
    """The arguments `make -n TARGET` would pass to `python -m tfsparse.pipeline` in this checkout."""
    out = subprocess.run([MAKE, "--no-print-directory", "-n", target, *make_args], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    line = next(line for line in out.splitlines() if " -m tfsparse.pipeline " in line)
    return line.split(" -m tfsparse.pipeline ", 1)[1].split()


def test_demo_is_the_default_recipe_at_demo_size_under_its_own_name():
    """`make demo` (issue 23: <= 10 min in a fresh clone): 3 + 6 epochs, no equal-epochs reference,
    every override a valid recipe value, and a name of its own so a full run's folders stay apart;
    `make full` is the recipe as written."""
    from tfsparse.pipeline.runner import parse_args
    from tfsparse.recipe import load_recipe

    args = parse_args(_pipeline_argv("demo"))
    assert (args.recipe, args.name, args.quick) == ("models/mobilenet_v1.toml", "mobilenet_v1-demo", False)
    demo, full = load_recipe(REPO / args.recipe, args.set), load_recipe(REPO / args.recipe)
    assert (demo.train.dense_epochs, demo.train.epochs, demo.train.equal_epochs_dense) == (3, 6, False)
    assert (full.train.dense_epochs, full.train.epochs, full.train.equal_epochs_dense) == (6, 12, True)
    assert demo.pruning.get_config() == full.pruning.get_config() and demo.export.get_config() == full.export.get_config()

    full_args = parse_args(_pipeline_argv("full"))
    assert (full_args.recipe, full_args.name, full_args.set) == ("models/mobilenet_v1.toml", None, [])
    other = parse_args(_pipeline_argv("demo", "RECIPE=models/kws_ds_cnn.toml", "DEMO_SET="))
    assert (other.recipe, other.name, other.set) == ("models/kws_ds_cnn.toml", "kws_ds_cnn-demo", [])
