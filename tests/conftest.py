"""Shared fixtures: small, fast configs on the real tiny preset (no mocks, no network)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread per process unless a test says otherwise: two pytest-xdist workers on 2 cores, each with torch's
# default of a thread per core, oversubscribe them (threads.py: 10-40x slower runs); the engine tier ran in 87 s
# instead of 107 s. Sweeps still give their children the threads of their own plan.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tests that compare the timings of runs and must find an injected effect (the A/B verdicts end to end): a second
# pytest-xdist worker on the same cores would be part of what they measure, so they carry @pytest.mark.serial and
# `make test` runs them alone, after the parallel part.
#
# Tests that take minutes go first: pytest-xdist hands tests out in collection order, and one started last would
# leave the other worker idle while it runs (the README runner executes every README command, ~5 minutes).
LONGEST_FIRST = ("test_readme.py::test_the_readme_runs_top_to_bottom_in_a_fresh_folder",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = [item for item in items if item.nodeid.endswith(LONGEST_FIRST)]
    items[:] = first + [item for item in items if item not in first]


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    # Two cores in CI, two workers: one torch thread each keeps them from oversubscribing (the unit tier has no torch).
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Machine-local caches (the hardware probe) go to one folder per test session: probed once, not
    # once per run, and nothing is written to the user's ~/.cache.
    # Under pytest-xdist the workers share the folder (the hardware probe once per test run, not per worker; the
    # cache is written atomically).
    previous = os.environ.get("TOKBENCH_CACHE_DIR")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "tokbench-cache"
        shared.mkdir(exist_ok=True)
        os.environ["TOKBENCH_CACHE_DIR"] = str(shared)
    else:
        os.environ["TOKBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("tokbench-cache"))
    yield
    if previous is None:
        os.environ.pop("TOKBENCH_CACHE_DIR", None)
    else:
        os.environ["TOKBENCH_CACHE_DIR"] = previous


@pytest.fixture
def fast_config_fields() -> dict[str, object]:
    """A config small enough to run end to end in about a second on 2 cores."""
    return {
        "model": "tiny-llama",
        "sequence_length": 16,
        "new_tokens": 6,
        "warmup_iterations": 1,
        "measurement_iterations": 2,
        "device": "cpu",
    }
