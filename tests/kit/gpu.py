"""Helpers of the GPU tier (a module of its own: `conftest` names more than one module in this test tree)."""

from __future__ import annotations

import pytest
import torch


def cuda_only(device: torch.device, why: str) -> None:
    """Skip a test that means something only on CUDA when the tier runs on the CPU (AMST_GPU_TIER_ON_CPU=1)."""
    if device.type != "cuda":
        pytest.skip(f"CUDA only: {why}")
