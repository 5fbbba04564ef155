# airfl: every target sets up what it needs; a second call skips what is already done.
#   make run    set up, then run the default experiment on the loopback
#   make test   set up, then run the whole test suite
#   make setup  set up only (.venv, pinned CPU torch, radio drivers where apt allows)
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip warns about every package absent from a local mirror listed in this machine's pip.conf: noise.
QUIET_PIP := grep -v 'is ignored: it is neither a file nor a directory' || true
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.airfl-installed
SYSSTAMP := $(VENV)/.airfl-system
RUN_CONFIG ?= configs/fedavg_digits.toml
RUN_OUT ?= runs/fedavg_digits
PYTEST_ARGS ?=

.PHONY: setup run test bench clean system-packages

setup: $(STAMP) $(SYSSTAMP)

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "airfl needs Python 3.11 ($(PYTHON) not found); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Python packages: ranges live in pyproject.toml, pins (CPU torch) in constraints.txt.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt "torch==2.13.0" 2>&1 | { $(QUIET_PIP); }
	$(PIP) install -q -c constraints.txt -e ".[test,pluto,lora]" 2>&1 | { $(QUIET_PIP); }
	touch $(STAMP)

# Radio drivers from Debian (libiio for Pluto, SoapySDR), installed when we are root with apt.
# Only the SoapySDR module is linked into the virtualenv, never Debian's numpy.
$(SYSSTAMP): $(PY)
	@bash scripts/install_system_packages.sh $(VENV)
	touch $(SYSSTAMP)

system-packages: $(PY)
	bash scripts/install_system_packages.sh $(VENV)

run: setup
	$(VENV)/bin/airfl run $(RUN_CONFIG) --out $(RUN_OUT)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/aircomp.py

clean:
	rm -rf $(VENV) runs .pytest_cache
