# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
PYTEST_ARGS ?=
# The suite runs on both backends across a worker per core plus one (the integration tests mostly wait for
# servers); a test file stays on one worker, with its own Dovecot, PostgreSQL cluster and SMTP server.
PYTEST_WORKERS ?= -n $(shell expr $$(nproc) + 1) --dist loadfile
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test quick lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(BIN)/python -m pip install -q ".[test]"
	touch $@

# Reinstalled (not editable) on every run so tests exercise the package exactly as a wheel installs it.
# build/ goes first: setuptools copies into it and never deletes, so a module removed from the tree would live on
# in the installed package.
install: $(VENV)/.deps
	rm -rf build
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --force-reinstall .

demo: install
	$(BIN)/ticketd demo

test: install
	scripts/ensure-test-packages.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

# While working: no slow end-to-end day, SQLite only (CI runs everything through `make test`).
quick: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m "not slow" --backend=sqlite $(PYTEST_ARGS)

lint: $(VENV)/.deps
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build dist *.egg-info
