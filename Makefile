# Everything a fresh machine needs (Python 3.11, pip, make) is installed into .venv by the
# targets below; re-running them is quick because .venv/.installed is only rebuilt when
# pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
COV_FLOOR := 90

.PHONY: test lint typecheck docs demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check lsqsync tests bench
	$(BIN)/ruff format --check lsqsync tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# four workers on two cores: the suite spends most of its time waiting on subprocesses,
# loopback HTTP and timers, so two more workers cut its wall time by about a third
test: lint typecheck $(VENV)/.installed
	$(BIN)/pytest -n 4 --cov --cov-report=term --cov-fail-under=$(COV_FLOOR)

# The documentation site (docs/, mkdocs.yml) in site/; --strict fails on a broken link or anchor.
docs: $(VENV)/.installed
	$(BIN)/mkdocs build --strict

# The demo (demo/run.sh) runs against a throw-away emulator: `emulator run` starts it, exports
# LSQ_HOST and the demo keys to the command, and stops it afterwards.
demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/lsqsync emulator run --opportunities 200 -- \
	  $(SHELL) demo/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage build dist site
