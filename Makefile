# `make run` starts the production server; `make test` checks and tests it. Each builds .venv first, from the
# pinned lock files (every package, with hashes), installing again only what a changed lock file pins differently.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps

.PHONY: install run test lint bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The server's own packages. Installed into the .venv that is there, never by removing it: a server started by
# `make run` keeps running while `make test` adds the test tools beside it. Pins that did not change are left alone.
$(RUNTIME): requirements.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements.txt
	touch $@

# The server's packages and the test tools (a superset of requirements.txt).
$(DEV): requirements-dev.txt requirements.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $(RUNTIME) $@

# Only build .venv with the server's packages (for a service manager that then starts .venv/bin/python serve.py).
install: $(RUNTIME)

run: $(RUNTIME)
	$(BIN)/python serve.py

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

# This server side by side with the tutorial's Express server when node is installed (ANCHOR=path to choose the
# tutorial's folder); BENCH_ROUNDS, BENCH_SECONDS and BENCH_DATABASE_URL as in bench/README.md.
bench: $(RUNTIME)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench.run

# Re-resolve both lock files from pyproject.toml (needs the dev tools, for uv).
lock: $(DEV)
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --no-header -o requirements.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 --no-header -o requirements-dev.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
