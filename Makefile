# Two commands do all the set-up on a fresh machine:
#   make report   the main job, `rectifiers compare` (installs into .venv on first use)
#   make test     installs what the tests need, then runs the whole suite
# and one for the documentation site:
#   make docs     installs the `docs` extra, then builds the site into site/ (warnings are errors)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned first, so that pip never resolves an unpinned torch (a multi-GB CUDA build).
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: report test install docs clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# torchvision and timm without their dependencies (which would pull another torch). The
	# only torchvision 0.28.0 wheel is a CUDA build that fails to import on this torch: it goes
	# to a folder of its own, which only the tests' stand-in for its compiled-op registrations
	# (tests/_torchvision_stub.py) puts on the path; elsewhere (Lightning's torchmetrics, your
	# code) torchvision is simply not installed, rather than broken.
	$(BIN)/python -m pip install -q --no-deps --target $(VENV)/torchvision-tests "torchvision==0.28.0"
	$(BIN)/python -m pip install -q --no-deps "timm==1.0.31"
	$(BIN)/python -m pip install -q huggingface_hub safetensors pyyaml
	touch $@

install: $(BIN)/.installed

# The docs extra after everything else, with torch named again at its pin, so that this install,
# too, never lets pip resolve an unpinned torch.
$(BIN)/.docs-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[docs]"
	touch $@

report: $(BIN)/.installed
	$(BIN)/rectifiers compare

test: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

docs: $(BIN)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build .pytest_cache site
