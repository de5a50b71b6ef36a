"""The run-level series the engine logs for every run, whatever the method (component `run`; the names, kinds and
splits are declared once in `amst_core.vocab.ENGINE_SERIES`), and the learning rates of the optimizer parts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from amst_core.gpu import GpuSampler
from amst_core.metrics import MetricPoint
from amst_core.skip import SkipSchedule
from amst_core.vocab import ENGINE_SERIES, RUN, RunSeries

DECLARED: dict[str, RunSeries] = {series.name: series for series in ENGINE_SERIES}
LR = "lr"  # per optimizer part (component = the part), and per modality's encoder (component `run`)


def series_point(name: str, epoch: int, value: float, modality: str | None = None) -> MetricPoint:
    """A point of a declared series, on the split it is declared for (an undeclared name is a KeyError: the
    dashboard would not know how to draw it)."""
    return MetricPoint(DECLARED[name].split, RUN, modality, name, epoch, value)


def skip_points(schedule: SkipSchedule, modalities: Sequence[str], epoch: int) -> list[MetricPoint]:
    """Whether each modality's encoder was updated in this epoch, and its skip factor then."""
    updated, factors = set(schedule.updated(epoch)), schedule.factors_at(epoch)
    points = [series_point("skip", epoch, float(m in updated), m) for m in modalities]
    return points + [series_point("skip_factor", epoch, float(factors[m]), m) for m in modalities]


def skip_speed_points(epoch: int, speeds: Mapping[str, float]) -> list[MetricPoint]:
    """`skip: auto`'s evidence for a decision taken now: each modality's learning speed."""
    return [series_point("skip_speed", epoch, speed, m) for m, speed in speeds.items()]


def lr_points(epoch: int, lrs: Mapping[str, float]) -> list[MetricPoint]:
    """lr of each optimizer part (encoders: the first modality's group), and of each modality's encoder group
    (`encoders:<modality>`; MSLR moves them apart)."""
    points = [MetricPoint("train", part, None, LR, epoch, lr) for part, lr in lrs.items() if ":" not in part]
    return points + [MetricPoint("train", RUN, part.split(":")[1], LR, epoch, lr) for part, lr in lrs.items()
                     if part.startswith("encoders:")]


def timing_points(epoch: int, samples: int, train_time: float, epoch_time: float) -> list[MetricPoint]:
    return [series_point("epoch_time", epoch, epoch_time), series_point("train_time", epoch, train_time),
            series_point("samples_per_s", epoch, samples / max(train_time, 1e-9))]


def gpu_points(epoch: int, sampler: GpuSampler | None) -> list[MetricPoint]:
    """The GPU's mean utilisation and peak memory over the epoch (none on a CPU run, or without NVML)."""
    stats = sampler.epoch_stats() if sampler is not None else None
    if stats is None:
        return []
    return [series_point("gpu_util", epoch, stats.util_percent), series_point("gpu_mem_gib", epoch, stats.mem_used_gib)]
