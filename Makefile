# Fovea: `make run` serves the embedded demo model; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PIP_FLAGS := --disable-pip-version-check -q -c constraints.txt
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-test run test lint bench clean

install: $(VENV)/.installed
	@$(BIN)/fovea models prepare-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q --upgrade pip wheel setuptools

# llama-cpp-python compiles llama.cpp from source the first time (~6 min on 2 cores);
# pip's wheel cache makes every later install quick.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	@echo "installing fovea (the first run builds llama.cpp: about 6 minutes)"
	$(PIP) install $(PIP_FLAGS) -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install $(PIP_FLAGS) -e '.[test]'
	@touch $@

install-test: install $(VENV)/.installed-test

run: install
	FOVEA_HOST=$(HOST) FOVEA_PORT=$(PORT) $(BIN)/fovea serve --bootstrap

test: install-test
	$(BIN)/python -m pytest

lint: install-test
	$(BIN)/ruff check fovea tests bench examples
	$(BIN)/ruff format --check fovea tests bench examples
	$(BIN)/mypy

bench: install-test
	$(PIP) install $(PIP_FLAGS) -e '.[test,bench]'
	$(BIN)/python bench/chat_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
