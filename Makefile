# Both public targets set themselves up: a virtual environment in .venv with
# torch, torchvision and this package installed in editable mode.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned explicitly: these releases install from this
# machine kind's local disk; an unpinned torch may pull several GB of CUDA wheels.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.cil-installed

.PHONY: demo test test-all lint format bench device-bundle gpu-evidence-dry-run clean-venv

$(STAMP): pyproject.toml
	@$(PYTHON) -c "" >/dev/null 2>&1 || { \
		echo "'$(PYTHON)' was not found: install Python 3.11 or newer, or name one with make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "cil needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 | head -n 1): run make PYTHON=python3.11 $(MAKECMDGOALS)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	rm -rf cil.egg-info  # a stale one in the checkout would hide the installed entry points
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## demo: a real incremental run offline (synthetic data, 50 base classes + 5 steps) and its report
# An interrupted demo (Ctrl-C) is resumed by the next `make demo`; a complete one is run again from scratch.
demo: $(STAMP)
	@if $(BIN)/python -c 'import json, sys; sys.exit(json.load(open("runs/demo/results.json"))["status"] == "complete")' 2>/dev/null; then \
		$(BIN)/cil run --resume runs/demo; \
	else \
		$(BIN)/cil run --scenario synthetic-b50-5 --strategy il-baseline-bsce \
			--epochs 8 --limit-per-class 200 --set model.backbone=resnet8 \
			--out runs/demo --overwrite; \
	fi

## test: the fast test suite (slow tests are excluded; `make test-all` runs them too)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## lint: ruff (lint and format check) and mypy, as CI runs them
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## format: rewrite the code in ruff's format and apply ruff's safe fixes
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-all: $(STAMP)
	CIL_HYPOTHESIS_PROFILE=thorough $(BIN)/python -m pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

## device-bundle: cil's wheel and the pure-Python packages a GPU machine without a registry lacks, in .devsite/
# then on the device: python3 benchmarks/gpu_evidence.py --bundle .devsite --out DIR (docs/performance.md)
device-bundle: $(STAMP)
	$(BIN)/python tools/device_bundle.py

## gpu-evidence-dry-run: the device command's whole sequence on the CPU at tiny sizes
gpu-evidence-dry-run: $(STAMP)
	$(BIN)/python benchmarks/gpu_evidence.py --dry-run --out runs/gpu-evidence-dry-run

clean-venv:
	rm -rf $(VENV)
