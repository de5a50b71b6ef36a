"""The GPU tier (`pytest -m gpu tests/gpu`): every CUDA path of the product, on a real GPU.

`device` is cuda:0 where CUDA is; else, with AMST_GPU_TIER_ON_CPU=1, the CPU, so that the tier's own code is
checked on machines without a GPU (here, and by `bench/gpu_check.sh --allow-cpu`); tests that mean something only
on CUDA (sync debug mode, fused SGD, bf16 and fp16 accuracy, NVML, device-side asserts) skip there with the
reason. Without either the whole tier skips at setup ("no CUDA device"): the default run collects it cheaply
(nothing trains at collection) and CI never needs it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
# bench/pipeline.py (data and the fast configuration) is reused rather than copied; the CPU tests' helpers come
# from tests/kit. Appended, not prepended: this conftest loads with every collection of the suite, and bench/'s
# module names (store, load, results, ...) must never shadow an installed package.
if str(ROOT / "bench") not in sys.path:
    sys.path.append(str(ROOT / "bench"))

ON_CPU = "AMST_GPU_TIER_ON_CPU"


def tier_device() -> torch.device | None:
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    if os.environ.get(ON_CPU) == "1":
        return torch.device("cpu")
    return None


@pytest.fixture(scope="session")
def device() -> torch.device:
    found = tier_device()
    if found is None:
        pytest.skip(f"no CUDA device ({ON_CPU}=1 runs the tier's code paths on the CPU)")
    return found


@pytest.fixture(autouse=True)
def _the_tier_needs_a_device(device: torch.device) -> None:
    """Every test of the tier, whether or not it asks for `device`, skips without one."""
