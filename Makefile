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
# setuptools' build/lib goes first: it copies into it and never deletes, so a module removed from the tree would
# live on in the installed package. (build/typecheck, lint's, is kept: it holds mypy's cache.)
install: $(VENV)/.deps
	rm -rf build/lib build/bdist.*
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --force-reinstall .

demo: install
	$(BIN)/ticketd demo

test: install lint
	scripts/ensure-test-packages.sh
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

# While working: no slow end-to-end day, SQLite only (CI runs everything through `make test`).
quick: install lint
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m "not slow" --backend=sqlite $(PYTEST_ARGS)

# mypy checks the product code under the names it is imported by (ticketd.daemon.pipeline, not daemon.pipeline),
# which only the package-dir mapping in pyproject.toml gives. The installed copy can't be checked from site-packages
# (no py.typed, and the other packages there shadow library modules), so the mapping is mirrored as symlinks under
# build/typecheck/ticketd/ and mypy runs from there, on the working tree without a reinstall. It reports
# ticketd/daemon/pipeline.py:12 for daemon/pipeline.py:12 in the repo: drop the leading ticketd/.
TYPECHECK = build/typecheck
PRODUCT   = daemon parsers rules mailtemplates storage

lint: $(VENV)/.deps
	$(BIN)/ruff check .
	mkdir -p $(TYPECHECK)/ticketd
	for d in $(PRODUCT); do ln -sfn $(CURDIR)/$$d $(TYPECHECK)/ticketd/$$d; done
	cd $(TYPECHECK) && $(abspath $(BIN))/python -m mypy --config-file $(CURDIR)/pyproject.toml -p ticketd

clean:
	rm -rf $(VENV) build dist *.egg-info
