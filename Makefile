# One entry point for the README's commands. Needs only Python 3.11 and Node.js.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test lint typecheck unit demo serve bench clean

setup: $(STAMP) node_modules/.package-lock.json

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

# Starts Azurite on free ports for the duration of the test run and stops it afterwards.
unit: setup
	$(PY) -m devkit.azurite run -- $(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

demo: setup
	$(PY) -m devkit demo

serve: setup
	$(PY) -m devkit serve

bench: setup
	$(PY) -m devkit.azurite run -- $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules .mypy_cache .pytest_cache .ruff_cache
