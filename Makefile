# The README's two commands: `make demo` (set up, run the pipeline on built-in data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; on a GPU machine pass e.g. TORCH_SPEC='torch>=2.5' to keep yours.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo-out

.PHONY: demo test setup setup-dev lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-installs whenever pyproject.toml changes; torch is installed first and on its own so that
# no plain `torch` requirement can pull a multi-GB CUDA build.
.setup-stamp: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -m dien_batch.model.native  # compile the fused CPU recurrence once (falls back if it cannot)
	touch $@

.setup-stamp-dev: .setup-stamp
	$(BIN)/python -m pip install -q -e ".[dev]"
	@scripts/ensure-chromium
	touch $@

setup: .setup-stamp
setup-dev: .setup-stamp-dev

demo: setup
	@scripts/check-java
	@scripts/demo "$(DEMO_OUT)"

test: setup-dev
	@scripts/check-java
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .setup-stamp .setup-stamp-dev $(DEMO_OUT)
