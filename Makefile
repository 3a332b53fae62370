# One entry point for setup, the main job and the tests (see README).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup compile run test bench lint clean ui learn

$(BIN)/collatz-hpo: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Exact torch pin first: it resolves to the local CPU build instead of a CUDA download.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Bytecode of our own packages (an editable install compiles none): where PYTHONDONTWRITEBYTECODE
# is set, every command would otherwise compile core/ and search/ anew (~1.5 s per process).
compile: $(BIN)/collatz-hpo
	$(BIN)/python -m compileall -q core search

setup: $(BIN)/collatz-hpo compile

run: setup
	$(BIN)/collatz-hpo launch studies/quick.toml --workers 2

test: setup
	$(BIN)/python -m pytest -q -n 2

bench: setup
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_study.py

lint: setup
	$(BIN)/ruff check core search tests benchmarks

clean:
	# Build outputs only: mlruns/ holds your studies and is never removed here.
	rm -rf $(VENV) checkpoints

ui: setup
	$(BIN)/collatz-hpo ui

learn: setup
	$(BIN)/collatz-hpo train --seconds 180
