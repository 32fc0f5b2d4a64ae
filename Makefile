# Two commands for a new user:
#   make demo   - set up a local virtual environment and run the main job on the bundled default
#   make test   - set up the same environment (plus test tools) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch==2.13.0 is the CPU wheel available offline on our machines; pinning it first keeps
# pip from resolving a newer multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv venv-test demo test benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[figures]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test]"
	touch $@

$(VENV)/.installed-benchmark: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[benchmark]"
	touch $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(BIN)/attention-unet-segment demo -o demo-output

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q Testing/Python

benchmark: $(VENV)/.installed-benchmark
	$(BIN)/python benchmarks/benchmark_inference.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
