# `make demo` and `make test` set up a virtual environment and run the job.
# constraints.txt pins torch==2.13.0: a local CPU wheel where one is provided, PyPI elsewhere.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install demo test lint docs docs-figures

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

# The documentation site: Sphinx with the docs extra; every warning is an error.
$(VENV)/.docs-installed: $(BIN)/pyrodiv
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(BIN)/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html

# The figures of the docs pages, made by the full `pyrodiv demo` run (about 2 minutes), with
# docs/_static/demo/figures.json: each figure's hash and the numbers it shows (the tests check
# that the committed figures match it and the current code).
docs-figures: install
	$(BIN)/pyrodiv demo --out out/docs-figures --no-progress
	$(BIN)/python -c 'import sys; from pyrodiv.demo.docs_figures import main; sys.exit(main())' \
		out/docs-figures docs/_static/demo
