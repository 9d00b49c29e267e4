# l1ad: `make run` runs the default pipeline, `make test` runs the test suite.
# Both create .venv and install the pinned stack (requirements/stack.txt) on first use; both are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.l1ad-stack
SYSSTAMP := .l1ad-system-tools
PYTEST_ARGS ?=

.PHONY: run test setup system quick clean bench

setup: $(STAMP) system

# torch must come first and exactly pinned: it takes the local CPU wheel; anything looser pulls CUDA wheels.
$(STAMP): requirements/stack.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -r requirements/stack.txt
	$(PIP) install -q --no-deps -e .
	$(PIP) check
	touch $(STAMP)

# Verilator (co-simulation), Yosys (resource reports), Chromium (report check) from Debian.
system:
	@bash .ci/system-tools.sh

run: setup
	$(VENV)/bin/l1ad run

quick: setup
	$(VENV)/bin/l1ad run --quick

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
