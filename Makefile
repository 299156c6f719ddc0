# pimrtl: `make` generates Verilog and area reports; `make test` runs the full regression.
# Every target sets itself up: a fresh clone needs only Python 3.11+, a C++ compiler, make, perl.

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.pimrtl-installed
# Area in um^2 comes from the IHP SG13G2 Liberty shipped in synth/pdk/; LIBERTY=path/to/cells.lib
# make synth uses yours instead (and fails clearly if it is missing).
LIBERTY ?=
SYNTH_LIBERTY = $(if $(LIBERTY),--liberty $(LIBERTY))
JOBS    ?= auto
PYTEST_ARGS ?=

.DEFAULT_GOAL := all
.PHONY: all setup verilog synth test bench formal demo summary clean

# NumPy's BLAS threads fight pytest-xdist workers and Verilator for the cores.
export OPENBLAS_NUM_THREADS ?= 1

all: verilog synth summary

# Re-install only when the dependency list changed.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

verilog: setup
	$(PY) -m hdl all --out-dir build/verilog

synth: setup
	$(PY) -m synth all --verilog-dir build/verilog --out-dir build/synth $(SYNTH_LIBERTY)

test: setup
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

bench: setup
	$(PY) -m tb.bench --out-dir build/bench

# Every formal proof at its full depth (the short ones also run in `make test`).
formal: setup
	$(PY) -m tb.formal

# Map a 256x256 layer onto the PIM tile and run it through the RTL with the golden crossbar
# in the loop (WEIGHTS=path.npy to use your own weights).
demo: setup
	$(PY) -m tb.demo $(if $(WEIGHTS),--weights $(WEIGHTS))

summary: setup
	@$(PY) -m synth summary --verilog-dir build/verilog --out-dir build/synth

clean:
	rm -rf build .pytest_cache
