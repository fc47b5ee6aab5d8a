# Two commands set up everything on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   - venv, install, offline data, default recipe end to end
#   make test   - venv, install, offline data, the test suite
#   make fuzz   - 10,000 mutated .tflite files through tfsparse.inspect (bench/fuzz.json)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
RECIPE ?= models/mobilenet_v1.toml

.PHONY: demo test fuzz install data clean

install: $(VENV)/.installed

# Debian ships venv's ensurepip separately (python3.11-venv); install it only if missing.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || \
	  { echo "installing python3-venv (needs root)"; \
	    apt-get install -y -q python3.11-venv 2>/dev/null || \
	    { apt-get update -q && apt-get install -y -q python3.11-venv; } || \
	    apt-get install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data: install
	$(PY) -m tfsparse.datasets fetch

# train -> export -> bench (host, emulated arm64) -> report + model card; resumable.
demo: data
	$(PY) -m tfsparse.pipeline $(RECIPE)

test: data
	$(PY) -m pytest -q

# 10,000 mutated .tflite files through the reader and XNNPACK analysis (tests run 400):
# writes bench/fuzz.json (count, crashes, hangs, seconds, seed); exit 1 on any crash or hang.
fuzz: install
	$(PY) -m tfsparse.fuzz --count 10000 --json bench/fuzz.json

clean:
	rm -rf $(VENV) runs build *.egg-info
