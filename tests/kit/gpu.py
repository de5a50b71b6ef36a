"""Helpers of the GPU tier (a module of its own: `conftest` names more than one module in this test tree), and
torch.cuda answering for cards a CPU machine does not have."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch


def cuda_only(device: torch.device, why: str) -> None:
    """Skip a test that means something only on CUDA when the tier runs on the CPU (AMST_GPU_TIER_ON_CPU=1)."""
    if device.type != "cuda":
        pytest.skip(f"CUDA only: {why}")


def fake_cards(monkeypatch: pytest.MonkeyPatch, cards: list[tuple[str, int] | None]) -> None:
    """torch.cuda answering for these cards (name, total bytes); None: a card whose properties the driver refuses."""
    def properties(device: int | torch.device | str) -> SimpleNamespace:  # torch takes an index or a device
        index = device if isinstance(device, int) else (torch.device(device).index or 0)
        card = cards[index]
        if card is None:
            raise RuntimeError("CUDA error: unspecified launch failure")
        return SimpleNamespace(name=card[0], total_memory=card[1])

    monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(cards))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(cards))
    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
