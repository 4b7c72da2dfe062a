# Two commands set up a fresh machine: `make demo` (pipeline) and `make test` (tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned (2.13.0, CPU wheel) before the rest so nothing pulls CUDA packages.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Stages run `python -m stages.<name>`: put the venv first on PATH so that is our python.
demo: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest -q -n 2

bench: install
	$(BIN)/python -m mazesearch.bench all

.PHONY: install demo test bench
