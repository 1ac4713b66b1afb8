# Kokoa: `make run` starts a gateway on a local data directory, `make test` runs the tests.
# Both build the virtualenv in .venv from nothing on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DATA ?= data

.PHONY: run test lint venv clean bench

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/twistd -n kokoa --data-dir $(DATA)

test: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests bench

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
