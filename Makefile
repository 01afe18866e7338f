# Two commands matter: `make run` (everything, with demo data) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
FRONTEND_SOURCES := $(shell find frontend/src -type f 2>/dev/null) frontend/index.html frontend/vite.config.js

.PHONY: run test test-quick install lint fmt bench clean

run: install
	$(BIN)/python -m app.launch

test: install
	$(BIN)/python -m pytest

test-quick: install
	$(BIN)/python -m pytest -m "not slow"

install: $(STAMP) frontend/dist/index.html

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

frontend/node_modules/.package-lock.json: frontend/package-lock.json
	npm --prefix frontend ci --no-audit --no-fund --loglevel=error

frontend/dist/index.html: frontend/node_modules/.package-lock.json $(FRONTEND_SOURCES)
	npm --prefix frontend run build

lint: install
	$(BIN)/ruff check app flows connectors tests
	$(BIN)/lint-imports

fmt: install
	$(BIN)/ruff format app flows connectors tests

clean:
	rm -rf $(VENV) frontend/node_modules frontend/dist
