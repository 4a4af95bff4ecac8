# The two commands of the README: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# What the image installs (runtime.lock) and what make installs (dev.lock): every package of
# pyproject.toml and of its dev extra, pinned with its hashes; `make lock` resolves them again.
LOCK := requirements/dev.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
# On your own machine the published development JWT secret is fine; elsewhere set
# COMPLAINTS_JWT_SECRET (and leave COMPLAINTS_ENVIRONMENT unset, which means production).
export COMPLAINTS_ENVIRONMENT ?= development

.PHONY: install lock run test unit integration e2e lint format setup rebuild token clean bench bench-quick wrk \
	mutation rotate-kek purge-keks maintain-keks screenshots
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Resolve requirements/runtime.lock and dev.lock again from pyproject.toml (Python 3.11, Linux
## x86_64, PyPI), with the uv pinned in the dev extra; versions already locked stay unless
## pyproject.toml moves them (`make lock UPGRADE=1` takes the newest allowed). Commit both.
UV := $(VENV)/bin/uv
UV_VERSION := $(shell grep -o '"uv==[^"]*"' pyproject.toml | tr -d '"' | cut -d= -f3)
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--index-url https://pypi.org/simple --no-config --custom-compile-command 'make lock' \
	--quiet $(if $(UPGRADE),--upgrade)
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(UV) --version 2>/dev/null | grep -q '^uv $(UV_VERSION) ' \
		|| $(PY) -m pip install --quiet 'uv==$(UV_VERSION)'
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o requirements/runtime.lock
	$(UV) pip compile pyproject.toml --extra dev -c requirements/runtime.lock $(LOCK_FLAGS) \
		-o requirements/dev.lock

## Start all four services on ports 8001-8004 against one SQLite store (./var/).
run: $(STAMP)
	$(PY) -m shared.cli.run

## Every test: unit, integration (SQLite and PostgreSQL), end to end.
test: $(STAMP)
	$(PY) -m pytest tests

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e tests/browser

## The README's console pictures (docs/console/), taken by the browser test of a complaint's
## life against the four real services.
SHOTS := tests/browser/screenshots/test_console_lifecycle
screenshots: $(STAMP)
	$(PY) -m pytest -q tests/browser/test_console_lifecycle.py
	mkdir -p docs/console
	cp $(SHOTS)/test_a_complaint_lives_its_whole_life_in_the_pages/*-complaint-replied.png docs/console/complaint.png
	cp $(SHOTS)/test_a_missed_limit_escalates_on_its_own/*-dashboard.png docs/console/dashboard.png

## Mutation testing of the time-limit and lifecycle modules (not in CI or `make test`; see the
## README): a fresh mutmut run over the unit tests and a few SQLite integration tests
## ([tool.mutmut] in pyproject.toml), then the score per module. One worker by default.
MUTATION_CHILDREN ?= 1
mutation: $(STAMP)
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children $(MUTATION_CHILDREN)
	$(PY) -m devtools.mutation_score

lint: $(STAMP)
	$(VENV)/bin/ruff check shared services tests devtools bench
	$(VENV)/bin/ruff format --check shared services tests devtools bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format shared services tests devtools bench
	$(VENV)/bin/ruff check --fix shared services tests devtools bench

# The load generator, from the distribution's packages.
wrk:
	@command -v wrk >/dev/null || $(SUDO) apt-get install -y -qq --no-install-recommends wrk \
		|| ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends wrk)

## Benchmarks against raw asyncpg and the library's own Application (under 10 minutes):
## BENCHMARKS.md, bench/results/full.json and full.png, a profile of the intake path.
bench: $(STAMP) wrk
	$(PY) -m bench.run full

## The same in under a minute, to keep it working (CI runs it; it asserts nothing about speed).
bench-quick: $(STAMP) wrk
	$(PY) -m bench.run quick

## Create the event store's tables (make run does this for you).
setup: $(STAMP)
	$(PY) -m shared.cli.setup_store

## Rebuild the read models and the audit chain from the first event (safe while running).
rebuild: $(STAMP)
	$(PY) -m shared.cli.rebuild $(NAMES)

## Re-wrap every customer key under a new key-encryption key (a rerun finishes a stopped one).
rotate-kek: $(STAMP)
	$(PY) -m shared.cli.kek rotate

## Destroy the KEKs superseded more than COMPLAINTS_KEK_RETENTION_DAYS (30) ago; run it daily.
purge-keks: $(STAMP)
	$(PY) -m shared.cli.kek purge

## The KEKs' daily step: stage one when due, put it in force once every process holds it, purge.
maintain-keks: $(STAMP)
	$(PY) -m shared.cli.kek maintain

## Print a JWT for local use: make token ROLE=investigator SUB=inv-001
ROLE ?= agent
SUB ?= $(ROLE)-local
token: $(STAMP)
	@$(PY) -m shared.cli.token --roles $(ROLE) --sub $(SUB) $(if $(DEPARTMENT),--department "$(DEPARTMENT)")

clean:
	rm -rf $(VENV) var mutants .pytest_cache .mypy_cache .ruff_cache
