# Two entry points for a fresh machine: `make demo` and `make test`. Both create (or reuse)
# the virtual environment in .venv and install xchip into it, editable, with what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.xchip-installed

.PHONY: demo test test-all conformance clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.demo --out out/demo

test: $(STAMP)
	$(PY) -m pytest -q

# The slow suites too (marked `slow`), for running on purpose.
test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

conformance: $(STAMP)
	$(PY) -m xchip.conformance tests/conformance/stablehlo --json out/conformance.json

clean:
	rm -rf $(VENV) out .pytest_cache
