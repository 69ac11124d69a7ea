# One entry point for the README's commands. Needs only Python 3.11 and Node.js.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test lint typecheck unit policy lock demo serve bench chaos chaos-quick soak clean

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

test: lint typecheck unit policy

# Policy scan of infra/ with checkov, offline, against the baseline in .checkov.yaml (each skipped
# check with its reason). checkov lives in its own venv: it has many dependencies that must not
# move the app's pins. checkov exits 0 when it cannot parse a file, so the JSON summary is
# checked too: no parsing errors and every resource scanned.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    ?= .venv-checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $@

policy: $(CHECKOV_STAMP)
	@rm -f $(CHECKOV_VENV)/results.json
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml -o cli -o json \
	  --output-file-path console,$(CHECKOV_VENV)/results.json
	@$(PYTHON) -c 'import json, sys; s = json.load(open(sys.argv[1]))["summary"]; \
	  ok = s["parsing_errors"] == 0 and s["resource_count"] > 0; \
	  print("policy: %(passed)d passed, %(failed)d failed, %(parsing_errors)d parsing errors, %(resource_count)d resources" % s); \
	  sys.exit(0 if ok else "policy: checkov could not parse infra/ (see above)")' $(CHECKOV_VENV)/results.json

# Re-pin the whole runtime tree with hashes after changing requirements.txt (needs the index).
lock: setup
	$(VENV)/bin/pip-compile --quiet --generate-hashes --no-strip-extras --no-emit-index-url \
	  --no-emit-find-links --output-file requirements.lock requirements.txt

demo: setup
	$(PY) -m devkit demo

# Azurite keeps its data in .azurite/ (git-ignored), so the registry survives a restart; an
# AzureWebJobsStorage from the environment or local.settings.json is used instead when set.
serve: setup
	$(PY) -m devkit serve --azurite --azurite-location .azurite $(SERVE_ARGS)

bench: setup
	$(PY) -m devkit.azurite run -- $(PY) -m bench $(BENCH_ARGS)

# The fault suite: kill -9, storage outage, Graph and Workbooks storms, duplicate and reordered
# notifications, delta expiry, lifecycle events, conflicting edits; each scenario's time to
# converge and its final state against a fault-free run.  It starts its own Azurite (on disk,
# so it can be stopped and started again).  The quick version is what `make test` runs
# (tests/chaos).  CHAOS_ARGS="--only kill,outage --seed 7" picks scenarios.
chaos: setup
	$(PY) bench/chaos.py $(CHAOS_ARGS)

chaos-quick: setup
	$(PY) bench/chaos.py --quick $(CHAOS_ARGS)

# The model-based test of identity with many more examples than make test runs, each new
# (random seeds; Hypothesis' example database in .hypothesis/ keeps what failed). SOAK_EXAMPLES
# and SOAK_STEPS size it; it prints a line per example and examples x steps at the end. The
# whole soak is one pytest test, so the per-test timeout of make test is off here.
SOAK_EXAMPLES ?= 200
SOAK_STEPS    ?= 60
soak: setup
	HYPOTHESIS_PROFILE=soak SOAK_EXAMPLES=$(SOAK_EXAMPLES) SOAK_STEPS=$(SOAK_STEPS) \
	  $(PY) -m devkit.azurite run -- $(PY) -m pytest tests/model -q -s -o timeout=0 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .mypy_cache .pytest_cache .ruff_cache
