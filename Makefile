# One command to set up and run the default benchmark (`make run`), one to set up and run the tests
# (`make test`). torch is installed only when none is importable, and then pinned to 2.13.0: an
# unpinned torch would pull gigabytes of CUDA wheels, and a torch the user already has is kept.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two installs, one stamp each: what the default run needs (tokbench and its dependencies), and on top of it the
# extras the tests need. `make run` never installs the test extras.
RUN_STAMP := $(VENV)/.tokbench-run-installed
STAMP := $(VENV)/.tokbench-installed
TORCH_PIN := torch==2.13.0
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist): the suite is mostly waiting on subprocesses and model loads; tests that need
# a machine-wide resource share one worker (xdist_group marks), and tests that compare timings between runs
# ("serial" mark, see tests/conftest.py) run alone afterwards. PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 2
# test: pytest, ruff and the test tools; ray: the Ray executor; quant: torchao, optimum-quanto, bitsandbytes
# (third-party quantization); serving: transformers serve's dependencies: installed so their tests run for real
# (ray ~240 MB, quant ~200 MB, serving ~30 MB more)
EXTRAS ?= test,ray,quant,serving

.PHONY: run test test-fast lint bench clean gpu-check browser

$(PY):
	@if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
		echo "make: reusing the torch installed for $(PYTHON) (venv with system site-packages)"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV); \
	fi

# The torch that is importable (the user's, or the pin just installed) becomes a constraint, so
# resolving tokbench's dependencies can never replace it with another torch from the registry. (-W ignore: a
# fresh torch warns that NumPy is missing, which tokbench's install brings next; a first run starts quietly.)
$(RUN_STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -c "import torch" >/dev/null 2>&1 || $(PY) -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	@$(PY) -W ignore -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(PY) -m pip install -q --disable-pip-version-check -c $(VENV)/torch-constraint.txt -e .
	@touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -c $(VENV)/torch-constraint.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/tokbench run

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports  # layers and torch-free core: [tool.importlinter] in pyproject.toml

# The report's browser tests need a headless Chromium: Debian's chromium, installed here when we are root
# with apt-get (quietly); otherwise those tests skip with one message saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "make: installing Debian's chromium for the report's browser tests"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
				|| echo "make: chromium could not be installed: the browser tests will skip"; \
		else \
			echo "make: no chromium (and not root with apt-get): the browser tests will skip"; \
		fi; }

test: $(STAMP) lint browser
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m "not serial" --durations=15 $(PYTEST_ARGS)
	$(PY) -m pytest -q -m serial --durations=5 $(PYTEST_ARGS)

# The quick tier: tests/unit (schema, analysis, config, results, report data, calibration), run with torch and the
# other heavy libraries made unimportable, which proves the read side needs none of them. Under a minute.
test-fast: $(STAMP)
	$(PY) scripts/pytest_without_torch.py -q $(PYTEST_ARGS) tests/unit

# On a machine with one CUDA GPU: the cuda tests and short real runs of every GPU path, with a report.
# No venv needed (a GPU box may have no registry): the venv's Python when it exists, else python3 and src/.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
GPU_CHECK_ARGS ?=
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
