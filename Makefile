# Two entry points for a fresh machine: `make demo` and `make test`. Both create (or reuse)
# the virtual environment in .venv and install xchip into it, editable, with what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.xchip-installed

.PHONY: demo test test-all test-arm64 arm64-toolchain chromium conformance clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.demo --out out/demo

test: $(STAMP) chromium
	$(PY) -m pytest -q

# The slow suites and the ARM64 ones too, for running on purpose.
test-all: $(STAMP) arm64-toolchain chromium
	$(PY) -m pytest -q -m ''

# ARM64 (Kunpeng 920): CPU-backend kernels cross-compiled for aarch64/tsv110 and run under
# qemu-aarch64, checked against the reference executor.
test-arm64: $(STAMP) arm64-toolchain
	$(PY) -m pytest -q -m arm64

ARM64_PACKAGES := qemu-user gcc-aarch64-linux-gnu
arm64-toolchain:
	@command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(ARM64_PACKAGES); }

# The report tests open report.html in headless Chromium (screenshot, console errors, plots).
BROWSER_PACKAGES := chromium fonts-dejavu-core
chromium:
	@command -v chromium >/dev/null || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(BROWSER_PACKAGES); }

conformance: $(STAMP)
	$(PY) -m xchip.conformance tests/conformance/stablehlo --json out/conformance.json

clean:
	rm -rf $(VENV) out .pytest_cache
