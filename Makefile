# One command to set up and run the default benchmark (`make run`), one to set up and run the tests
# (`make test`). torch is installed only when none is importable, and then pinned to 2.13.0: an
# unpinned torch would pull gigabytes of CUDA wheels, and a torch the user already has is kept.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tokbench-installed
TORCH_PIN := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: run test lint bench clean

$(PY):
	@if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
		echo "make: reusing the torch installed for $(PYTHON) (venv with system site-packages)"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV); \
	fi

# The torch that is importable (the user's, or the pin just installed) becomes a constraint, so
# resolving tokbench's dependencies can never replace it with another torch from the registry.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -c "import torch" >/dev/null 2>&1 || $(PY) -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	@$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(PY) -m pip install -q --disable-pip-version-check -c $(VENV)/torch-constraint.txt -e ".[test,quant]"
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tokbench run

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

test: $(STAMP) lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
