# Kokoa: `make run` starts a gateway on a local data directory, `make test` runs the tests.
# Both build the virtualenv in .venv from nothing on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DATA ?= data
CONFIG ?= kokoa.toml

.PHONY: run test lint venv clean bench

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

# Uses ./kokoa.toml when there is one, else an empty gateway on ./data.
run: venv
	$(BIN)/twistd --pidfile= -n kokoa $(if $(wildcard $(CONFIG)),--config $(CONFIG),--data-dir $(DATA) --http tcp:8080 --https tcp:8443)

test: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests bench

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
