"""Which device a run trains on, and the process-wide switches a run sets there: seeds, determinism, precision.

A worker process serves one run after another, so every switch is set both ways at each run's start: a run that
asked for nothing inherits nothing from the run before it.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from amst_core.config import ConfigError
from amst_core.distributed import SINGLE, Ranks

# cuBLAS reads its workspace setting when a process first uses it, and with a workspace of its own per stream its
# results are reproducible only with ":4096:8" or ":16:8". Set before any CUDA work of this process (the engine
# imports this module), so that a deterministic run after a non-deterministic one in the same worker still gets
# it; ":4096:8" (32 MiB) is what PyTorch itself chooses on Hopper cards, so nothing is lost elsewhere.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def resolve_device(spec: str, ranks: Ranks = SINGLE) -> torch.device:
    """`auto`, `cpu`, `cuda` or `cuda:N` as a device with an index where it is a GPU (`auto` and `cuda`: cuda:0;
    on several ranks each rank's GPU, cuda:LOCAL_RANK): `torch.cuda.set_device`, NVML's bus-id lookup and the RNG
    state of 'the run's GPU' all need one."""
    if ranks.distributed and spec in ("auto", "cuda") and torch.cuda.is_available():
        spec = f"cuda:{ranks.local_rank}"
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device", f"{spec} requested but CUDA is not available on this machine")
    # `auto` and `cuda` mean the process's first visible GPU, never "whichever GPU the last run set current"
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= torch.cuda.device_count():
        raise ConfigError("device", f"{spec}: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


def deterministic_for(requested: bool | None, device: torch.device) -> bool:
    """Unset: exact reproducibility on a CPU (it costs nothing there), cuDNN autotuning on a GPU."""
    return requested if requested is not None else device.type != "cuda"


def channels_last_for(setting: bool | str, device: torch.device) -> bool:
    """`model.channels_last`. auto: on a GPU only. On a CPU channels-last makes an epoch faster (issue 21:
    about 0.75x the time on 2 cores) but oneDNN's channels-last BatchNorm errs 10-1000x more than the default
    layout's against float64 (statistics up to 0.5% off at batch 64: bench/channels_last.py), so updates stop
    being bitwise the reference's, and narrow encoders crash (config.MIN_CHANNELS_LAST_WIDTH). cuDNN prefers
    the layout, and its kernels are not bitwise the reference's anyway (unmeasured here)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    set_determinism(deterministic)


def set_determinism(on: bool) -> None:
    """On: cuDNN's deterministic kernels without autotuning, and every other op's deterministic implementation
    (an op that has none raises, naming itself, instead of silently varying: e.g. index_add_ on a GPU takes its
    deterministic path, an atomic-add backward fails). Off: cuDNN autotunes and ops take their fastest kernel."""
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on
    torch.use_deterministic_algorithms(on)
    # No op of ours reads memory it has not written, so filling every torch.empty with NaN (what the switch also
    # does by default) would only cost bandwidth, on every CPU run (deterministic by default there).
    torch.utils.deterministic.fill_uninitialized_memory = False


def check_precision(precision: str, device: torch.device) -> None:
    """bf16 on a GPU only where the card computes it natively (Ampere on): `torch.cuda.is_bf16_supported()`
    answers yes on older cards too, where bf16 is emulated, slower than fp32 and no saving at all."""
    if precision != "bf16" or device.type != "cuda":
        return
    if not native_bf16(device):
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        raise ConfigError("precision", f"bf16: {name} (compute capability {major}.{minor}) has no native bf16 "
                                       "(it needs 8.0, Ampere, or later); use fp16 or fp32 on this GPU")


def set_cpu_kernels(precision: str, device: torch.device) -> None:
    """oneDNN off for bf16 on a CPU, on for everything else (set afresh for every run, like determinism).

    PyTorch 2.11's oneDNN bf16 kernels on a CPU read memory nobody wrote: the same seeded bf16 run gave NaN
    validation losses in about half its repeats, depending on what the process had allocated before; 8 of 8
    repeats were clean with oneDNN off (tests/core/test_determinism_resume.py repeats such a run). bf16 on a CPU
    is for trying the code path, not for speed (its convolutions are slower than fp32 either way)."""
    torch.backends.mkldnn.enabled = not (precision == "bf16" and device.type == "cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast pays off on `device`: a GPU that computes it natively, compute capability 8.0 on
    (not a CPU, where bf16 convolutions are slower than fp32). Asked of `device` itself: is_bf16_supported()
    answers for the current GPU, which on a machine of mixed cards may be another."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def is_device_failure(err: BaseException) -> bool:
    """A CUDA error that leaves this process's CUDA context unusable (a device-side assert, an illegal memory
    access, ...): every later kernel of the process fails too, so the worker must not take another run. Out of
    memory is not one: the context survives it."""
    seen: BaseException | None = err
    while seen is not None:  # the CUDA error may be the cause of what was raised (a DataLoader, a wrapper)
        if isinstance(seen, torch.OutOfMemoryError):
            return False
        if isinstance(seen, torch.AcceleratorError):
            return True
        if isinstance(seen, RuntimeError) and any(mark in str(seen) for mark in BROKEN_CONTEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# What the first error after a device-side assert may say: the CUDA runtime's own words, or cuDNN's and
# cuBLAS's status when one of their kernels is the first to notice.
BROKEN_CONTEXT = ("CUDA error", "device-side assert", "CUDA driver error", "cuDNN error: CUDNN_STATUS_EXECUTION",
                  "CUBLAS_STATUS_EXECUTION_FAILED", "CUBLAS_STATUS_INTERNAL_ERROR")
