# Two commands do all the set-up on a fresh machine:
#   make quickstart   installs into .venv on first use, then runs sweeps/quickstart.yaml
#   make test         installs into .venv on first use, then the everyday tests (about 3 min
#                     on 2 cores once installed; README "Two commands" has the measured times)
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

.PHONY: quickstart test test-all lint bench relock

# Installed = tested: every package at the version constraints.txt locks.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --constraint constraints.txt --upgrade pip
	$(VENV)/bin/pip install --quiet --constraint constraints.txt -e '.[dev]'
	touch $(STAMP)

# A new lock: a fresh environment at the newest versions pyproject.toml allows, frozen into
# constraints.txt (torch without its local "+cpu" label, so a CUDA build of it satisfies the
# lock too), then the golden outcomes re-pinned with it. Review both diffs before committing.
relock:
	rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip && $(VENV)/bin/pip install --quiet -e '.[dev]'
	{ head -2 constraints.txt; $(VENV)/bin/pip freeze --all --exclude-editable \
	  | grep -v -E '^(setuptools|wheel)==' | sed -E 's/^(torch==[^+]+)\+.*$$/\1/'; } > constraints.new
	mv constraints.new constraints.txt && touch $(STAMP)
	$(VENV)/bin/python scripts/pin_golden.py

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

# The everyday tiers (unit and slow) on two workers, the tests that read one shared sweep on the
# same one (tests/conftest.py); then the full tier: the tests that need the host to themselves
# (`host`) alone, the rest two at a time likewise. Each run prints its wall time by tier.
PYTEST_2 := $(VENV)/bin/pytest -n 2 --dist loadgroup
EVERYDAY := $(PYTEST_2) -m "not full" --durations=15

test: $(STAMP)
	$(EVERYDAY)

test-all: $(STAMP) $(SYSTEM_STAMP)
	status=0; $(EVERYDAY) || status=$$?; \
	$(VENV)/bin/pytest -m "full and host" || status=$$?; \
	$(PYTEST_2) -m "full and not host" --durations=40 || status=$$?; exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/quickstart.py
