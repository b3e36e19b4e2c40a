# Coarse-to-Control: everything a newcomer needs is `make demo` and `make test`; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# A CPU build of torch; override on machines that want another build, e.g. TORCH_SPEC="torch==2.13.0+cu128".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.c2c-setup-done
export MUJOCO_GL ?= osmesa
export PYOPENGL_PLATFORM ?= osmesa

.PHONY: setup setup-libero demo test test-slow bench bench-gpu bench-streaming bench-demos bench-tokenizer bench-policy bench-serve bench-threads check-lerobot check-openpi check-min-transformers clean help

help:
	@echo "make demo   - run the main job (c2c run --preset quick); sets itself up"
	@echo "make test   - run the test suite (simulator tests included); sets itself up"
	@echo "make setup  - create $(VENV) and install everything (CPU torch, the package, libosmesa6)"
	@echo "make setup-libero - add the LIBERO simulator and its assets to $(VENV) (after setup)"
	@echo "make bench  - all benchmarks (bench-demos, bench-tokenizer, bench-policy, bench-serve, bench-threads)"
	@echo "make bench-policy - decode latency (fast vs reference loop), training samples/s, evaluation episodes/min"
	@echo "make bench-threads - the same training on 1 and 2 torch threads: do the weights agree?"
	@echo "make bench-serve - c2c serve under load: 8 clients x 200 requests vs one client, bad inputs injected"
	@echo "make bench-gpu - paligemma-3b on a GPU: training samples/s and memory at batch 1-16, decode ms (<= 8 min)"
	@echo "make bench-streaming - the streaming loader's samples/s per worker on an AV1 dataset (256 -> 224 px)"
	@echo "make test-slow - long checks (marker 'slow')"
	@echo "make check-lerobot - compatibility with LeRobot's own dataset class (throwaway venv)"
	@echo "make check-openpi - openpi-client's WebsocketClientPolicy against c2c serve (throwaway venv)"
	@echo "make check-min-transformers - the model tests on the lowest transformers release we support (throwaway venv)"

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required; found " + sys.version.split()[0] + " (set PYTHON=python3.11)")'
	@bash scripts/ensure_osmesa.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install --quiet --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "torch $$($(PY) -c 'import torch; print(torch.__version__)') already present"; \
	else \
		echo "installing $(TORCH_SPEC) (CPU build)"; $(PIP) install --quiet "$(TORCH_SPEC)"; \
	fi
	$(PIP) install --quiet -e ".[sim,dev]"
	@touch $(STAMP)
	@echo "setup done: activate with 'source $(VENV)/bin/activate' or call $(VENV)/bin/c2c"

# LIBERO into the same environment (CPU torch and mujoco 3.3.0 kept); idempotent, see scripts/setup_libero.sh.
setup-libero: setup
	@bash scripts/setup_libero.sh $(VENV)

demo: setup
	$(VENV)/bin/c2c run --preset quick --out runs/quick

test: setup
	$(PY) -m pytest -m "not slow and not lerobot and not openpi"

test-slow: setup
	$(PY) -m pytest -m "slow"

bench: bench-demos bench-tokenizer bench-policy bench-serve bench-threads

bench-demos: setup
	$(PY) benchmarks/bench_demo_fps.py

bench-tokenizer: setup
	$(PY) benchmarks/bench_tokenizers.py --out runs/bench-tokenizers

bench-policy: setup
	$(PY) benchmarks/bench_policy.py --out runs/bench-policy
	$(PY) benchmarks/bench_eval.py --episodes 30 --rounds 2 --out runs/bench-eval

bench-serve: setup
	$(PY) benchmarks/bench_serve.py --out runs/bench-serve

bench-threads: setup
	$(PY) benchmarks/bench_threads.py --out runs/bench-threads

# Needs a CUDA GPU and a CUDA build of torch (e.g. make setup TORCH_SPEC="torch==2.13.0" on a GPU machine).
bench-gpu: setup
	$(PY) benchmarks/bench_gpu.py --out runs/bench-gpu

bench-streaming: setup
	$(PY) benchmarks/bench_streaming.py --out runs/bench-streaming

check-lerobot:
	bash scripts/make_lerobot_venv.sh .venv-lerobot
	C2C_LEROBOT_PYTHON=$(abspath .venv-lerobot)/bin/python $(PY) -m pytest -m lerobot

# openpi-client pins numpy<2 and imports typing_extensions without declaring it: a throwaway venv of its own.
OPENPI_VENV ?= .cache/openpi-venv
check-openpi: setup
	@test -x $(OPENPI_VENV)/bin/python || $(PYTHON) -m venv $(OPENPI_VENV)
	$(OPENPI_VENV)/bin/python -m pip install --quiet "numpy<2" openpi-client typing_extensions
	C2C_OPENPI_PYTHON=$(abspath $(OPENPI_VENV))/bin/python $(PY) -m pytest -m openpi tests/test_serve_openpi.py

# The lowest transformers release pyproject.toml admits, in a throwaway venv, under the model, decoding, training
# and serving tests: releases differ in attention masks and in the decoder's cache keyword (one renamed it).
MINTF_VENV ?= .cache/min-transformers-venv
MIN_TRANSFORMERS = $(shell sed -n 's/^ *"transformers>=\([0-9.]*\).*/\1/p' pyproject.toml)
check-min-transformers:
	@test -n "$(MIN_TRANSFORMERS)" || { echo "no 'transformers>=X' line in pyproject.toml" >&2; exit 2; }
	@test -x $(MINTF_VENV)/bin/python || $(PYTHON) -m venv $(MINTF_VENV)
	@$(MINTF_VENV)/bin/python -m pip install --quiet --upgrade pip
	@$(MINTF_VENV)/bin/python -c "import torch" 2>/dev/null || $(MINTF_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(MINTF_VENV)/bin/python -m pip install --quiet -e ".[dev]" "transformers==$(MIN_TRANSFORMERS).*"
	$(MINTF_VENV)/bin/python -c "import transformers; print('transformers', transformers.__version__)"
	$(MINTF_VENV)/bin/python -m pytest -q tests/test_policy_model.py tests/test_policy_decoding.py \
		tests/test_multistream.py tests/test_policy_train.py tests/test_policy_api.py tests/test_policy_pretrained.py \
		tests/test_serve.py -m "not slow"

clean:
	rm -rf $(VENV) .venv-lerobot $(OPENPI_VENV) $(MINTF_VENV) .pytest_cache build src/*.egg-info
