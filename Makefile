# `make demo` and `make test` set up a virtual environment and run the job.
# constraints.txt pins torch==2.13.0: a local CPU wheel where one is provided, PyPI elsewhere.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install demo test lint

$(BIN)/pyrodiv: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(BIN)/pyrodiv

install: $(BIN)/pyrodiv

demo: install
	$(BIN)/pyrodiv demo --out out/demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
