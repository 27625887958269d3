# gpu-grid: every target sets up what it needs from nothing (.venv, and the MXNet env for tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MXNET_VENV := .venv-mxnet
# A CUDA box can use a CUDA build, e.g. make mxnet-env MXNET_PKG=mxnet-cu112==1.9.1
MXNET_PKG ?= mxnet==1.9.1
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
# Frameworks: tensorflow-cpu + CPU jax on a CPU box, tensorflow[and-cuda] + jax[cuda12] on a GPU box.
EXTRA ?= $(if $(HAS_GPU),gpu,cpu)
SPEC ?= $(if $(HAS_GPU),examples/keras/grid-gpu.yaml,examples/keras/grid.yaml)
RESULTS ?= results
GRID_ARGS ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist, one test file to a process): most tests wait on subprocesses, Ray and
# sleeps, so 3 fill a 2-core machine; TEST_JOBS=0 runs them in this process. Files are handed out
# longest first (tests/conftest.py), so xdist's own reordering is off.
TEST_JOBS ?= 3
XDIST := -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder

.PHONY: venv mxnet-env grid test test-fast bench report lint clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRA),dev]"
	@touch $@

# MXNet 1.9.1 is retired and needs numpy<1.24: it lives in its own interpreter.
mxnet-env: $(MXNET_VENV)/.installed
$(MXNET_VENV)/.installed:
	@test -x $(MXNET_VENV)/bin/python || $(PYTHON) -m venv $(MXNET_VENV)
	$(MXNET_VENV)/bin/python -m pip install -q --upgrade pip
	$(MXNET_VENV)/bin/python -m pip install -q "$(MXNET_PKG)" "numpy==1.23.5" psutil
	@touch $@

grid: venv
	$(BIN)/grid run $(SPEC) --results $(RESULTS) $(GRID_ARGS)

test: venv mxnet-env lint
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# ruff (lint and formatting) over the whole tree, mypy over grid/, and the import contracts (layers,
# isolation, no circles; [tool.importlinter] in pyproject.toml).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PYTHONPATH=tasks/site $(BIN)/lint-imports --no-logo

clean:
	rm -rf $(VENV) $(MXNET_VENV) .pytest_cache build *.egg-info

# Reports and the nightly regression check (grid report / grid compare over the results dataset).
REPORT ?= report
BASELINE ?= baselines/nightly
.PHONY: nightly

report: venv
	$(BIN)/grid report $(RESULTS) --out $(REPORT)

# Exit status: grid compare's (0 no regression, 1 regression, 2 usage/data error, 3 incomplete, 6 noisy); see scripts/nightly.sh.
nightly: venv
	BASELINE=$(BASELINE) GRID=$(BIN)/grid GRID_ARGS="$(GRID_ARGS)" scripts/nightly.sh

# Scheduler overhead against the ideal makespan and against Ray Tune; on a GPU box also a trial's
# fixed overhead, cold vs warm starts, compile cache off vs on (numbers: benchmarks/RESULTS.md).
BENCH_ARGS ?= --trials 1000 --seconds 1 --gpus 16
BENCH_GPU_RESULTS ?= benchmarks/overhead-results
.PHONY: cluster-demo bench-gpu

bench: venv $(VENV)/.bench-installed $(if $(HAS_GPU),bench-gpu)
	$(BIN)/python benchmarks/bench_scheduler.py $(BENCH_ARGS) --json benchmarks/last-run.json

# Issue 24: the Lightning and Hugging Face examples' fixed overhead, cold vs warm, gpu-grid's share
# apart from the framework's (a GPU box; numbers in benchmarks/RESULTS.md).
BENCH_LOOPS_RESULTS ?= benchmarks/loops-results
.PHONY: bench-loops
bench-loops: venv
	$(BIN)/grid run specs/loops-overhead-gpu.yaml --results $(BENCH_LOOPS_RESULTS) --plain
	$(BIN)/grid run specs/loops-overhead-hf-gpu.yaml --results $(BENCH_LOOPS_RESULTS) --plain
	$(BIN)/python benchmarks/bench_loops.py $(BENCH_LOOPS_RESULTS) --json benchmarks/loops-last-run.json

# Issue 26: the largest batch of a GPT-2-medium-sized Lightning LM, by Lightning's BatchSizeFinder and by
# gpu-grid's search (each answer re-run in a fresh process), and 8 Keras trials packed vs one at a
# time (a GPU box; numbers in benchmarks/RESULTS.md).
BENCH_SEARCH_OUT ?= benchmarks/search-results
.PHONY: bench-search
bench-search: venv
	$(BIN)/python benchmarks/bench_search.py $(BENCH_SEARCH_OUT)

# Issue 29: reads of a finished 1,000 and 10,000-trial sweep (grid status, report, query, a resume
# with nothing to do) and grid plan of a 100,000-value axis, each a fresh process (CPU box;
# numbers in benchmarks/RESULTS.md). PYTHONPATH=<another checkout> measures that one.
BENCH_SCALE_ARGS ?= --trials 1000 10000 --plan 100000
.PHONY: bench-scale
bench-scale: venv
	$(BIN)/python benchmarks/bench_scale.py $(BENCH_SCALE_ARGS) --json benchmarks/scale-last-run.json

# Issue 25: the nightly check on unchanged code (false alarms: exit 1) and with a slowdown injected
# (KERAS_SLOWDOWN_PCT), by its rule and the rule before it, same nights; everything under one folder.
BENCH_NIGHTLY_OUT ?= benchmarks/nightly-results
BENCH_NIGHTLY_ARGS ?=
.PHONY: bench-nightly
bench-nightly: venv
	$(BIN)/python benchmarks/bench_nightly.py $(BENCH_NIGHTLY_OUT) $(BENCH_NIGHTLY_ARGS)

bench-gpu: venv
	$(BIN)/grid run specs/overhead-gpu.yaml --results $(BENCH_GPU_RESULTS) --plain
	$(BIN)/python benchmarks/bench_overhead.py $(BENCH_GPU_RESULTS) --json benchmarks/overhead-last-run.json

$(VENV)/.bench-installed: pyproject.toml
	$(BIN)/python -m pip install -q -e ".[bench]"
	@touch $@

# A 3-node Ray cluster on 127.0.0.1 in a private network namespace (needs root), a small sweep on it,
# then the cluster stopped by PID (clusters/demo.sh).
cluster-demo: venv
	unshare -n bash clusters/demo.sh
