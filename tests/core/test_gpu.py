"""GPU series (amst_core.gpu): the NVML sampler's mean utilisation and peak memory per epoch, the paths where it is
off, and the run-level series a training run emits with it. On a CPU, with a fake `pynvml` module."""

from __future__ import annotations

import sys
import threading
import time
from types import ModuleType, SimpleNamespace

import pytest
import torch

from amst_core import gpu
from amst_core.engine import Trainer
from amst_core.gpu import GIB, GpuSampler, GpuStats, open_sampler
from amst_core.sinks import MemorySink
from tests.kit.tiny import tiny_config


class FakeNvml(ModuleType):
    """pynvml's calls that the sampler makes, answering scripted readings (the last one repeats)."""

    def __init__(self, utils: list[float] | None = None, mems_gib: list[float] | None = None,
                 fail_init: bool = False) -> None:
        super().__init__("pynvml")
        self.utils, self.mems = list(utils or [50.0]), list(mems_gib or [1.0])
        self.fail_init = fail_init
        self.calls: list[tuple] = []
        self.readings = 0
        self.lock = threading.Lock()

    def nvmlInit(self) -> None:
        self.calls.append(("init",))
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.calls.append(("shutdown",))

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> str:
        self.calls.append(("pci", bus_id))
        return f"pci:{bus_id}"

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.calls.append(("index", index))
        return f"index:{index}"

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> SimpleNamespace:
        with self.lock:
            value = self.utils.pop(0) if len(self.utils) > 1 else self.utils[0]
            self.readings += 1
        return SimpleNamespace(gpu=value, memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        with self.lock:
            value = self.mems.pop(0) if len(self.mems) > 1 else self.mems[0]
        return SimpleNamespace(used=int(value * GIB), total=int(141 * GIB), free=0)


CUDA = torch.device("cuda:0")  # a device object only: nothing here touches CUDA


def test_epoch_stats_are_the_mean_utilisation_and_the_peak_memory_since_the_epoch_began() -> None:
    nvml = FakeNvml(utils=[99, 10, 20, 30, 40, 60], mems_gib=[100, 2.0, 6.5, 3.0, 1.0, 4.0])
    sampler = GpuSampler(nvml, "h", interval_s=3600)  # not started: the readings are the test's
    assert sampler.sample()  # before the epoch: forgotten
    sampler.begin_epoch()
    for _ in range(3):
        sampler.sample()
    assert sampler.epoch_stats() == GpuStats(util_percent=25.0, mem_used_gib=6.5)  # + one reading at the end
    assert sampler.epoch_stats() == GpuStats(util_percent=60.0, mem_used_gib=4.0)  # a short epoch: that one


def test_the_sampler_thread_samples_until_stopped() -> None:
    nvml = FakeNvml(utils=[80.0], mems_gib=[3.0])
    sampler = GpuSampler(nvml, "h", interval_s=0.01).start()
    deadline = time.monotonic() + 5
    while nvml.readings < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert nvml.readings >= 3
    assert sampler.epoch_stats() == GpuStats(80.0, 3.0)
    sampler.stop()
    assert not sampler.thread.is_alive()
    assert nvml.calls[-1] == ("shutdown",)


def test_a_refusing_nvml_stops_the_series() -> None:
    nvml = FakeNvml()

    def refuse(_handle: str) -> None:
        raise RuntimeError("Not Supported")  # utilisation of a MIG slice

    nvml.nvmlDeviceGetUtilizationRates = refuse  # type: ignore[method-assign]
    sampler = GpuSampler(nvml, "h", interval_s=3600)
    assert sampler.epoch_stats() is None
    assert sampler.epoch_stats() is None


def test_the_run_gpu_is_found_by_pci_bus_id(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    props = SimpleNamespace(pci_domain_id=0, pci_bus_id=0x3B, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    sampler = open_sampler(CUDA, interval_s=3600)
    assert sampler is not None and sampler.handle == "pci:00000000:3B:00.0"
    sampler.stop()


def test_without_a_pci_bus_id_the_index_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: SimpleNamespace())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    sampler = open_sampler(torch.device("cuda:1"), interval_s=3600)
    assert sampler is not None and sampler.handle == "index:1"
    sampler.stop()
    sampler = open_sampler(CUDA, interval_s=3600)
    assert sampler is not None and sampler.handle == "index:3"
    sampler.stop()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2a")  # a UUID: no mapping to guess
    sampler = open_sampler(CUDA, interval_s=3600)
    assert sampler is not None and sampler.handle == "index:0"
    sampler.stop()


def test_off_on_a_cpu_without_nvml_or_when_nvml_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert open_sampler(torch.device("cpu")) is None
    assert nvml.calls == []  # a CPU run never asks NVML anything
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: the import fails
    assert open_sampler(CUDA) is None
    broken = FakeNvml(fail_init=True)
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert open_sampler(CUDA) is None
    no_device = FakeNvml()

    def no_handle(_index: int) -> None:
        raise RuntimeError("Invalid Argument")

    no_device.nvmlDeviceGetHandleByIndex = no_handle  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "pynvml", no_device)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: SimpleNamespace())
    assert open_sampler(CUDA) is None
    assert no_device.calls[-1] == ("shutdown",)


def gpu_series(sink: MemorySink) -> dict[str, list[tuple[int, float]]]:
    return {name: [(p.epoch, p.value) for p in sink.points if p.name == name and p.split == "train"
                   and p.component == "run" and p.modality is None] for name in ("gpu_util", "gpu_mem_gib")}


def test_a_training_run_with_a_sampler_emits_both_series_every_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(utils=[40.0], mems_gib=[1.5])
    samplers: list[GpuSampler] = []

    def sampler_on_any_device(device: torch.device, interval_s: float = 0.5) -> GpuSampler:
        samplers.append(GpuSampler(nvml, "h", interval_s=0.01).start())
        return samplers[-1]

    monkeypatch.setattr(gpu, "open_sampler", sampler_on_any_device)
    sink = MemorySink()
    Trainer(tiny_config(epochs=3), sinks=[sink], progress=False).fit()
    assert gpu_series(sink) == {"gpu_util": [(0, 40.0), (1, 40.0), (2, 40.0)],
                                "gpu_mem_gib": [(0, 1.5), (1, 1.5), (2, 1.5)]}
    assert len(samplers) == 1 and not samplers[0].thread.is_alive()  # stopped when training ends


def test_a_cpu_run_has_no_gpu_series() -> None:
    sink = MemorySink()
    Trainer(tiny_config(epochs=1), sinks=[sink], progress=False).fit()
    assert gpu_series(sink) == {"gpu_util": [], "gpu_mem_gib": []}
