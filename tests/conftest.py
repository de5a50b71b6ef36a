from __future__ import annotations

from typing import Any

import pytest
import torch

from amst_core.config import RunConfig, load_config

# The models in tests are tiny: one thread is faster than two fighting over cache, and it keeps CI (2 cores)
# from oversubscribing when a test starts worker processes of its own.
torch.set_num_threads(1)


def tiny_config(method: str = "naive", **fields: Any) -> RunConfig:
    """A synthetic run small enough to train in well under a second per epoch on a CPU."""
    base: dict[str, Any] = {
        "method": method,
        "dataset": {"name": "synthetic", "synthetic": {"samples": {"train": 48, "val": 24, "test": 24}}},
        "model": {"frames": 1},
        "epochs": 2,
        "batch_size": 16,
        "device": "cpu",
        "optim": {"lr": 0.05},
    }
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_config(base=base)


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Never touch a developer's ./data or ~/.cache from a test."""
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path_factory.mktemp("data")))
    monkeypatch.setenv("AMST_CACHE", str(tmp_path_factory.mktemp("cache")))
