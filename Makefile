# Two commands on a fresh machine: `make run` and `make test`. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system run test lint format bench paper clean

setup: $(STAMP) system

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

system:
	bash scripts/setup-system.sh

run: setup
	$(BIN)/weightless serve

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_decode.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_service.py

# Weightless vs Deep Compression at iso-accuracy, four model/data pairs (~30 min on 2 CPUs).
paper: setup
	$(BIN)/python benchmarks/paper_table.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .hypothesis
