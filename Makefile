# Two commands do all the set-up on a fresh machine:
#   make quickstart   installs into .venv on first use, then runs sweeps/quickstart.yaml
#   make test         installs into .venv on first use, then the everyday tests (about 10 min)
# and `make test-all` runs every test (CI's command): real clusters over SSH, PostgreSQL, the
# browser, kills and full disks too; it installs the Debian packages those need.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
# Debian packages the tests use: a browser and its driver (MLflow UI test), an SSH server and
# rsync (`ray up` of the local-provider cluster file), a PostgreSQL server (tracking store test),
# shellcheck (every shell script).
SYSTEM_PACKAGES := chromium chromium-driver openssh-server rsync postgresql shellcheck

.PHONY: quickstart test test-all lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(SYSTEM_STAMP): Makefile
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi; \
	else echo "note: not root with apt-get: install $(SYSTEM_PACKAGES) for every test to run"; fi
	mkdir -p $(VENV) && touch $@

quickstart: $(STAMP)
	$(VENV)/bin/kinfuse sweep sweeps/quickstart.yaml

test: $(STAMP)
	$(VENV)/bin/pytest -m "not full" --durations=15

test-all: $(STAMP) $(SYSTEM_STAMP)
	$(VENV)/bin/pytest --durations=40

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/quickstart.py
