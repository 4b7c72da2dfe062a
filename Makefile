# Two commands set up a fresh machine: `make demo` (pipeline) and `make test` (tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned (2.13.0, CPU wheel) before the rest so nothing pulls CUDA packages; every other
# package comes at the exact version in constraints.txt, so a fresh machine gets the same versions.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $@

# `dvc plots show` / `dvc plots diff` draw offline: .dvc/config points plots.html_template at this
# page, which inlines vega, vega-lite and vega-embed (npm tarballs at pinned versions, fetched once
# into build/vega/ and checked against their sha512: tools/plots_template.py). npm runs only here.
build/plots_template.html: tools/plots_template.py
	$(PY) tools/plots_template.py $@

install: $(VENV)/.installed build/plots_template.html

# `dvc repro` with independent stages side by side on every core (mazesearch/repro.py: same
# outputs and dvc.lock as `dvc repro`). The runner puts its own interpreter's folder first on
# PATH, so the stages' `python -m stages.<name>` is the venv's python.
demo: install
	$(BIN)/python -m mazesearch.repro

# The report's browser test drives Debian's Chromium (tests/test_report_browser.py); Playwright
# itself comes from PyPI with the test extras and downloads no browser.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@chromium --version 2>/dev/null

test: install browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder  # a file's tests share one worker (test_pipeline's repo fixture); conftest puts the longest file first

# Re-pin constraints.txt from a fresh venv built from pyproject.toml alone.
lock:
	rm -rf /tmp/mazesearch-lock && $(PY) -m venv /tmp/mazesearch-lock
	/tmp/mazesearch-lock/bin/pip install -q --upgrade pip
	/tmp/mazesearch-lock/bin/pip install -q torch==2.13.0 && /tmp/mazesearch-lock/bin/pip install -q -e ".[test]"
	{ sed -n 1,2p constraints.txt; /tmp/mazesearch-lock/bin/pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

bench: install
	$(BIN)/python -m mazesearch.bench all

.PHONY: install browser demo test bench lock
