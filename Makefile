# Two commands do all the set-up on a fresh machine:
#   make quickstart   installs into .venv on first use, then runs sweeps/quickstart.yaml
#   make test         installs into .venv on first use, then runs the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: quickstart test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/kinfuse sweep sweeps/quickstart.yaml

test: $(STAMP)
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/quickstart.py
