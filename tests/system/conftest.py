"""Fixtures the system tests share, found by name. Each is defined here once: a session-scoped fixture is then built
once per pytest worker (one imported into several test modules is a separate fixture in each, built again)."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faults_support import TINY_FIELDS, tmpfs

from tokbench.config import BenchmarkConfig


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A real read-only filesystem (chmod does not stop root: a mount does)."""
    yield from tmpfs(tmp_path / "readonly", "size=64k,ro", "a read-only filesystem")


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A real 8 KiB filesystem: a write check fits, a report does not."""
    yield from tmpfs(tmp_path / "full", "size=8k", "a full filesystem")


@pytest.fixture(scope="session")
def real_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two real results of one workload (tiny-llama on the CPU), measured once for every fault test."""
    import tokbench
    from tokbench.schema.results import save_result

    folder = tmp_path_factory.mktemp("real-results")
    paths = []
    for name in ("base", "cont"):
        result = tokbench.run(BenchmarkConfig(**TINY_FIELDS))
        assert result.status == "ok", result.reason
        paths.append(save_result(result, folder / f"{name}.json"))
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A one-node cluster owned by this test process (``ray.shutdown`` ends every process it started);
    its address lets other drivers (the CLI) connect to it. One cluster at a time on this machine: the tests that
    use it share a pytest-xdist worker (xdist_group "ray"), and a machine-wide lock holds even where that grouping
    does not (pytest-xdist#1386) or another test run is at it too."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    with open(Path(tempfile.gettempdir()) / "tokbench-tests-ray-cluster.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, after the cluster is shut down
        yield from _one_node_cluster(ray)


def _one_node_cluster(ray: Any) -> Iterator[str]:
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 1024 * 1024,
        _node_ip_address="127.0.0.1",  # Ray binds the node's own address instead; nothing outside can reach it
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
