# Two commands set up everything on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   - venv, install, offline data, default recipe end to end
#   make test   - venv, install, offline data, the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
RECIPE ?= models/mobilenet_v1.toml

.PHONY: demo test install data clean

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

clean:
	rm -rf $(VENV) runs build *.egg-info
