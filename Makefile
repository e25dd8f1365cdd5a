# Two commands for a new user: `make book` and `make test`. Both create .venv
# on first use. Everything else here is for maintainers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

RUNS ?=

.PHONY: setup book test execute bench gpu-check reference lab sample-data clean help

help:
	@echo "make book     build the HTML book into _build/html (creates .venv on first use)"
	@echo "make test     unit tests + every notebook under nbval + book build and browser check"
	@echo "make execute  re-run every notebook and store its outputs (after changing one)"
	@echo "make bench    run the side-by-side benchmarks in benchmarks/"
	@echo "make gpu-check  the full SegNet's speed and memory on this GPU, beside the paper's"
	@echo "make reference  retrain and re-ship the reference runs (RUNS='name ...' for some)"
	@echo "make lab      install JupyterLab into .venv and open the notebooks"
	@echo "make clean    remove _build/, runs/ and caches (keeps .venv)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11+ needed, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo
	@echo "Open the book: file://$(CURDIR)/_build/html/index.html"

# The README's test command. Notebooks are compared with their committed
# outputs (nbval); the sanitize file masks paths, timings and TF log lines.
# A repo-local cache, so a fresh clone regenerates the sample data and the
# sample checkpoints instead of reusing ones left in ~/.cache.
# Two worker processes (pytest-xdist): a single TensorFlow process keeps the
# 2 cores of the CI machine ~65% busy (29 CPU-minutes in 23 minutes of wall
# time: graph building, kernel start-up, Python and I/O run on one core).
# --dist loadscope runs each notebook's cells in order in one worker.
# TEST_WORKERS=0 runs everything in one process.
test: export SEGNET_CACHE_DIR ?= $(CURDIR)/.cache
test: $(STAMP)
	$(BIN)/python -m pytest --nbval --nbval-current-env \
		--nbval-sanitize-with .nbval_sanitize.cfg --nbval-cell-timeout 900 \
		-n $(TEST_WORKERS) --dist loadscope \
		tests notebooks $(PYTEST_ARGS)

execute: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py notebooks/*.ipynb

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# On a GPU machine: forward/backward time, images/s and peak GPU memory at
# 360x480 beside the paper's Table 6 (GPU_CHECK_ARGS=--smoke: a tiny CPU run).
gpu-check: $(STAMP)
	$(BIN)/python -m segnet_lib gpu-check $(GPU_CHECK_ARGS)

# The trained models the book shows: trained to the end on the CPU and shipped
# small under reference/ (python -m segnet_lib reference --list names them).
reference: $(STAMP)
	$(BIN)/python -m segnet_lib reference $(RUNS)

lab: $(STAMP)
	$(BIN)/python -m pip install --quiet "jupyterlab>=4"
	$(BIN)/jupyter lab notebooks/

sample-data: $(STAMP)
	$(BIN)/python -m segnet_lib sample-data

clean:
	rm -rf _build runs .pytest_cache .hypothesis test-artifacts
