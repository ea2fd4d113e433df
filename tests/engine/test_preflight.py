"""Config validation, defaults, hashing, and config files."""

from __future__ import annotations

import pytest
import torch

from tokbench.config import BenchmarkConfig
from tokbench.engine.preflight import check_runnable
from tokbench.errors import UnavailableFeatureError


def test_flash_attention_without_its_package_is_unavailable_not_rewritten() -> None:
    config = BenchmarkConfig(attn_implementation="flash_attention_2", device="cpu")
    with pytest.raises(UnavailableFeatureError) as caught:
        check_runnable(config)
    assert caught.value.field == "attn_implementation"
    assert config.attn_implementation == "flash_attention_2"


def test_kernels_without_the_library_is_unavailable() -> None:
    import importlib.util

    if importlib.util.find_spec("kernels") is not None:
        pytest.skip("the kernels library is installed here")
    with pytest.raises(UnavailableFeatureError, match="kernels"):
        check_runnable(BenchmarkConfig(kernels=True, device="cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_on_a_cpu_machine_is_unavailable() -> None:
    with pytest.raises(UnavailableFeatureError, match="CUDA") as caught:
        check_runnable(BenchmarkConfig(device="cuda"))
    assert caught.value.field == "device"
