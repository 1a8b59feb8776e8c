# Two entry points for a fresh machine: `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench screenshot clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,gpu]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/crossent study run --preset noise

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cross_entropy.py

# docs/img/calc.png, the README's picture of `crossent calc --web` (needs chromium).
screenshot: $(STAMP)
	$(BIN)/python -m tests.cli.web.screenshot

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
