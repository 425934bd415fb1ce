# Two entry points, each setting up .venv from nothing on a machine with Python >= 3.11:
#   make demo   simulate -> train -> encode -> evaluate -> report on the embedded default
#   make test   the test suite
#   make pretrained   retrain the shipped model (`xlatent train --recipe default`) and copy it
#               into src/xlatent/model/data/pretrained (tools/build_pretrained.py)
# torch==2.13.0 is installed first: on the project machines that pin resolves to the CPU
# wheel on local disk, and any looser spec could pull a multi-GB CUDA build.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.xlatent-installed
DEMO_OUT ?= demo_out
DEMO_N   ?= 20000

.PHONY: demo test lint clean pretrained

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/xlatent demo --out $(DEMO_OUT) --n $(DEMO_N)

test: $(STAMP)
	$(BIN)/python -m pytest -q

pretrained: $(STAMP)
	$(BIN)/python tools/build_pretrained.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
