# `make run` starts the production server; `make test` runs the tests. Both build .venv first,
# and rebuild it only when requirements.txt changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test bench clean

$(INSTALLED): requirements.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/python serve.py

test: $(INSTALLED)
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache
