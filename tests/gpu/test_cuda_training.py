"""Training on the GPU: every method on `device: auto` and on the GPU named with its index, 2 short epochs; the NVML
series of a real CUDA run; fused SGD across a resume from one device to the other, both ways."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from amst_core.catalog import METHODS
from amst_core.engine import Trainer
from amst_core.sinks import MemorySink
from tests.kit.gpu import cuda_only
from tests.kit.tiny import tiny_config
from tests.kit.training import PARAMS, optimizer_flags

pytestmark = pytest.mark.gpu


def on_device(trainer: Trainer, device: torch.device) -> bool:
    """Every parameter and buffer of every network the method trains lives on `device` (index included)."""
    tensors = [t for m in trainer.method.modules() for t in (*m.parameters(), *m.buffers())]
    return bool(tensors) and all(t.device == device for t in tensors)


def train_losses(sink: MemorySink) -> dict[int, list[float]]:
    losses: dict[int, list[float]] = {}
    for p in sink.points:
        if p.split == "train" and p.name == "loss":
            losses.setdefault(p.epoch, []).append(p.value)
    return losses


@pytest.mark.parametrize("spec", ["auto", "indexed"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_two_epochs_on_the_gpu(device: torch.device, method: str, spec: str) -> None:
    """`auto` and `cuda:0` both resolve to the GPU with its index (a bare `cuda` once failed in set_device)."""
    cfg = tiny_config(method, device="auto" if spec == "auto" else str(device), method_params=PARAMS.get(method, {}),
                      skip={"audio": 2} if METHODS[method].uses_skip else {})
    sink = MemorySink()
    trainer = Trainer(cfg, sinks=[sink], progress=False)
    assert trainer.device == device
    summary = trainer.fit()
    assert summary["final_epoch"] == 1
    losses = train_losses(sink)
    assert set(losses) == {0, 1} and all(math.isfinite(v) for vs in losses.values() for v in vs), losses
    assert on_device(trainer, device)
    assert optimizer_flags(trainer) == ({True} if device.type == "cuda" else {None}), "fused SGD on a GPU only"


def test_a_cuda_run_has_nvml_gpu_series_every_epoch(device: torch.device) -> None:
    cuda_only(device, "NVML reads an NVIDIA GPU")
    sink = MemorySink()
    Trainer(tiny_config("amst_full", device=str(device), epochs=2), sinks=[sink], progress=False).fit()
    series = {name: {p.epoch: p.value for p in sink.points if p.name == name and p.component == "run"
                     and p.modality is None} for name in ("gpu_util", "gpu_mem_gib")}
    assert set(series["gpu_util"]) == {0, 1} and set(series["gpu_mem_gib"]) == {0, 1}, series
    assert all(0 <= v <= 100 for v in series["gpu_util"].values())
    assert all(v > 0 for v in series["gpu_mem_gib"].values()), "this process's CUDA context alone uses memory"



def weights(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().cpu().clone() for m in trainer.method.modules() for p in m.parameters()]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("direction", ["cpu-to-gpu", "gpu-to-cpu"])
def test_a_resume_on_another_device_steps_with_that_devices_sgd(device: torch.device, tmp_path: Path,
                                                                direction: str, precision: str) -> None:
    """A checkpoint written on one device, resumed on the other: fused SGD on the GPU, not on the CPU, and the
    first step after the resume trains (fp16's scaler once failed it: 'Expected grad_scale and found_inf to be
    None')."""
    cuda_only(device, "a checkpoint moves between the CPU and a GPU")
    first, then = ("cpu", str(device)) if direction == "cpu-to-gpu" else (str(device), "cpu")
    few = {"synthetic": {"samples": {"train": 16, "val": 8, "test": 8}}}  # fp16 on a CPU is slow
    config = {"method": "amst_alt", "precision": precision, "dataset": few, "batch_size": 8, "skip": {"audio": 2}}
    Trainer(tiny_config(**config, device=first, epochs=1), out_dir=tmp_path, progress=False).fit()

    sink = MemorySink()
    resumed = Trainer(tiny_config(**config, device=then, epochs=2), out_dir=tmp_path, sinks=[sink], progress=False)
    resumed.resume()
    if then.startswith("cuda"):
        assert optimizer_flags(resumed) == {True}
    else:
        assert optimizer_flags(resumed) <= {None, False}
    before = weights(resumed)
    resumed.fit()
    losses = train_losses(sink)  # epoch 0's points come back from the checkpoint, epoch 1's are new
    assert set(losses) == {0, 1} and all(math.isfinite(v) for v in losses[1]), losses
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(resumed), strict=True)), \
        "the resumed epoch moved the weights"
