# Two commands set up everything on a fresh Debian/Ubuntu machine with Python 3.11-3.13:
#   make demo   - venv, install, offline data, the default recipe end to end at demo size
#   make test   - venv, install, offline data, the test suite
#   make full   - the default recipe as written (the README's results table)
#   make fuzz   - 10,000 mutated .tflite files through tfsparse.tflite.inspector (bench/fuzz.json)
# TensorFlow 2.21 / ai-edge-litert 2.3.0 publish wheels for CPython 3.11-3.13 only
# (pyproject's requires-python). Newest first: the newest Python is the one a distribution
# ships as python3 (Debian 13: 3.13, Ubuntu 24.04: 3.12, Debian 12: 3.11). Each candidate
# is run, not just found: a pyenv shim exists for every installed version but fails unless
# that version is selected.
PYTHON_NEEDED := tfsparse needs Python 3.11, 3.12 or 3.13 (TensorFlow 2.21 has wheels for no other)
supported_py = $(1) -c 'import sys; sys.exit(sys.version_info[:2] not in [(3, 11), (3, 12), (3, 13)])' 2>/dev/null
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for c in python3.13 python3.12 python3.11 python3; do \
                    p=$$(command -v $$c) && $(call supported_py,$$p) && echo $$p && exit; done)
endif
# Checked when the venv is (re)built; $(error) makes it one line ("Makefile:N: *** ... Stop.").
python_error = $(if $(PYTHON),$(shell $(call supported_py,$(PYTHON)) || \
                 echo "PYTHON=$(PYTHON) is $$($(PYTHON) -V 2>/dev/null || echo not runnable)"),$\
                 none of python3.13 python3.12 python3.11 python3 on PATH is one)
VENV   := .venv
PY     := $(VENV)/bin/python
RECIPE ?= models/mobilenet_v1.toml
# A newcomer's first command should finish in about 10 minutes on 2 cores, pip and data included:
# the demo trains 3 dense + 6 pruning epochs (the recipe: 6 + 12) and leaves out the equal-epochs
# dense reference (the recipe trains 12 more dense epochs for it). Same model, data, pruning
# schedule shape, export and benchmarks; its own name, so it never mixes with a full run's folders.
# `make demo DEMO_SET=` runs the recipe as written under the demo's name.
DEMO_SET ?= train.dense_epochs=3 train.epochs=6 train.equal_epochs_dense=false
DEMO_NAME ?= $(basename $(notdir $(RECIPE)))-demo

.PHONY: demo full test fuzz install data clean check-pythons

install: $(VENV)/.installed

# One line instead of pip's resolver error when no supported Python is there.
# Debian ships venv's ensurepip separately (python3.X-venv); install it only if missing.
$(VENV)/.installed: pyproject.toml
	$(if $(python_error),$(error $(PYTHON_NEEDED): $(python_error)))
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || \
	  { pkg=python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv; \
	    echo "installing $$pkg (needs root)"; \
	    apt-get install -y -q $$pkg 2>/dev/null || \
	    { apt-get update -q && apt-get install -y -q $$pkg; } || \
	    apt-get install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data: install
	$(PY) -m tfsparse.datasets fetch

# train -> export -> bench (host, emulated arm64) -> report + model card; resumable.
demo: data
	$(PY) -m tfsparse.pipeline $(RECIPE) --name $(DEMO_NAME) $(addprefix --set ,$(DEMO_SET))

full: data
	$(PY) -m tfsparse.pipeline $(RECIPE)

# Two workers (pytest-xdist); a file, and the files sharing a trained session fixture, stay
# in one worker (tests/conftest.py). `.venv/bin/pytest tests/test_x.py` runs one file serially.
# Tests marked `timing` (tight emulated speed ratios) then run alone: a second worker beside
# the emulator skews them.
test: data
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not timing"
	$(PY) -m pytest -q -m timing

# 10,000 mutated .tflite files through the reader and XNNPACK analysis (tests run 400):
# writes bench/fuzz.json (count, crashes, hangs, seconds, seed); exit 1 on any crash or hang.
fuzz: install
	$(PY) -m tfsparse.fuzz --count 10000 --json bench/fuzz.json

# make test on a fresh Debian 13 root (Python 3.13), built with debootstrap; needs root.
# Uses the host's Python only to run the script (stdlib), not the venv.
check-pythons:
	@test -n "$(PYTHON)" || { echo "check-pythons needs a python3 to run tools/check_pythons.py" >&2; exit 1; }
	$(PYTHON) tools/check_pythons.py

clean:
	rm -rf $(VENV) runs build *.egg-info
