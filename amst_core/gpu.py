"""GPU utilisation and memory of the run's device, as run-level series (`gpu_util`, `gpu_mem_gib`); and the GPUs a
worker announces in the run store (`visible_gpus`).

A daemon thread samples NVIDIA's management library (NVML, the `pynvml` module of `nvidia-ml-py`) every
`interval_s`; at each epoch's end the engine takes the mean utilisation and the peak memory used since the epoch
began. No NVML, no NVIDIA GPU, or a CPU run: there is no sampler, and no series.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypedDict

import torch

log = logging.getLogger("amst.gpu")
GIB = 2**30
MIB = 2**20


class GpuInfo(TypedDict):
    index: int  # as this process numbers it: cuda:<index> (CUDA_VISIBLE_DEVICES may hide or reorder the machine's)
    name: str
    memory_mib: int  # the card's total memory


def visible_gpus() -> list[GpuInfo]:
    """The GPUs this process may use, as torch sees them (a worker pinned with `--gpu N` sees its one GPU as
    cuda:0); empty on a machine without CUDA. A driver that answers the count but not a card's properties is
    logged and that card left out: a worker that cannot describe a GPU must still register and heartbeat."""
    if not torch.cuda.is_available():
        return []
    gpus: list[GpuInfo] = []
    for index in range(torch.cuda.device_count()):
        try:
            props = torch.cuda.get_device_properties(index)
        except Exception as err:
            log.warning("cannot read the properties of cuda:%d (%s): left out of the worker's GPUs", index, err)
            continue
        gpus.append(GpuInfo(index=index, name=str(props.name), memory_mib=int(props.total_memory) // MIB))
    return gpus


@dataclass(frozen=True)
class GpuStats:
    util_percent: float  # mean over the epoch's samples
    mem_used_gib: float  # peak over the epoch's samples (memory used on the device, by every process)


class GpuSampler:
    """Samples one NVML device in a daemon thread; `epoch_stats()` summarises the samples since `begin_epoch()`."""

    def __init__(self, nvml: ModuleType, handle: Any, interval_s: float = 0.5):
        self.nvml, self.handle, self.interval_s = nvml, handle, interval_s
        self.lock = threading.Lock()
        self.utils: list[float] = []
        self.mems: list[float] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True, name="gpu-sampler")

    def start(self) -> GpuSampler:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5 * self.interval_s)
        with contextlib.suppress(Exception):  # shutting down a library that may be half gone: nothing to report
            self.nvml.nvmlShutdown()

    def loop(self) -> None:
        while not self.stopped.wait(self.interval_s):
            if not self.sample():
                return

    def sample(self) -> bool:
        """One reading; False (and no more sampling) when NVML refuses, e.g. utilisation on a MIG slice."""
        try:
            util = float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            mem = float(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used) / GIB
        except Exception as err:
            log.debug("NVML sample failed (%s): GPU series stop", err)
            self.stopped.set()
            return False
        with self.lock:
            self.utils.append(util)
            self.mems.append(mem)
        return True

    def begin_epoch(self) -> None:
        with self.lock:
            self.utils, self.mems = [], []

    def epoch_stats(self) -> GpuStats | None:
        """Mean utilisation and peak memory since `begin_epoch()`; one reading now so a short epoch has one."""
        if self.stopped.is_set() or not self.sample():
            return None
        with self.lock:
            utils, mems = self.utils, self.mems
            self.utils, self.mems = [], []
        return GpuStats(sum(utils) / len(utils), max(mems))


def open_sampler(device: torch.device, interval_s: float = 0.5) -> GpuSampler | None:
    """A started sampler of the GPU `device` trains on, or None (a CPU run, no NVML, no NVIDIA driver)."""
    if device.type != "cuda":
        return None
    try:
        import pynvml  # lazily: CPU workers and machines without the driver never load it
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as err:
        log.debug("NVML unavailable (%s): no GPU series", err)
        return None
    try:
        handle = nvml_handle(pynvml, device)
    except Exception as err:
        log.debug("no NVML handle for %s (%s): no GPU series", device, err)
        pynvml.nvmlShutdown()
        return None
    return GpuSampler(pynvml, handle, interval_s).start()


def nvml_handle(nvml: ModuleType, device: torch.device) -> Any:
    """NVML numbers every GPU of the machine, CUDA only the visible ones (CUDA_VISIBLE_DEVICES, possibly
    reordered): match by PCI bus id when torch knows it, else map the index through CUDA_VISIBLE_DEVICES."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        props = torch.cuda.get_device_properties(index)
        bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
        return nvml.nvmlDeviceGetHandleByPciBusId(bus_id)
    except Exception as err:
        log.debug("PCI bus id lookup failed (%s); using the device index", err)
    return nvml.nvmlDeviceGetHandleByIndex(visible_index(index))


def visible_index(index: int) -> int:
    """The machine-wide index of CUDA device `index`, when CUDA_VISIBLE_DEVICES lists plain numbers."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if index < len(visible) and all(v.isdigit() for v in visible):
        return int(visible[index])
    return index
