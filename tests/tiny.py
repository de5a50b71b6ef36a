"""Tiny run configs shared by the tests (importable: tests/ is on sys.path via the root conftest)."""

from __future__ import annotations

from typing import Any

from amst_core.config import RunConfig, load_config


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
