"""Limits on what a run request may ask of the service, set by the operator (environment, `AMST_MAX_*`).

The API refuses a request beyond them with a 422 naming the field, before anything is stored or queued, so a
single request cannot fill the database, the disk or a worker's memory. RunConfig's own bounds are looser: they
say what makes sense at all, these say what this service accepts. Doc/service.md lists them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from amst_core.catalog import METHODS
from amst_core.config import ConfigError
from amst_core.method_specs import MethodSpec
from amst_core.vocab import (
    BOUNDED_METRICS,
    ENGINE_SERIES,
    EVAL_SPLITS,
    FAMILIES,
    FUSED,
    LOSS_METRICS,
    OPTIMIZER_PARTS,
    SPLITS,
    RunSeries,
)

if TYPE_CHECKING:
    from amst_core.config import RunConfig

MB = 1024 * 1024
FLOAT_BYTES = 4  # inputs reach the model as float32


class Limits(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AMST_MAX_", extra="ignore")

    body_bytes: int = Field(256 * 1024, ge=1024, description="size of a request body")
    config_bytes: int = Field(32 * 1024, ge=1024, description="size of a run config as stored (canonical JSON)")
    tags: int = Field(50, ge=0, description="tags on one run")
    epochs: int = Field(10_000, ge=1, description="epochs of one run")
    batch_size: int = Field(4096, ge=1, description="samples per batch")
    num_workers: int = Field(32, ge=0, description="data-loading processes of one run")
    restarts: int = Field(20, ge=0, description="max_restarts of one run")
    batch_input_mb: int = Field(2048, ge=1, description="float32 input tensors of one batch, in MiB")
    synthetic_mb: int = Field(1024, ge=1, description="a generated (synthetic) dataset held in memory, in MiB")
    points_per_run: int = Field(5_000_000, ge=1, description="metric points one run may write")
    sample_mb: int = Field(2048, ge=1, description="one media file of a folder dataset (audio, image, video, a "
                           "frame), in MiB")
    text_sample_mb: int = Field(1, ge=1, description="one text file of a folder dataset, in MiB (a text model reads "
                                "at most a few thousand tokens of it)")


@lru_cache(maxsize=1)
def get_limits() -> Limits:
    return Limits()


def oversized(path: str | Path, size: int, limits: Limits | None = None) -> str | None:
    """Why a sample file of `size` bytes may not be read (it would be read whole into a worker's memory), or None.
    Text has its own, far smaller limit: a text model reads only its first few thousand tokens."""
    limits = limits or get_limits()
    text = Path(path).suffix.lower() == ".txt"
    limit_mb, setting = (limits.text_sample_mb, "AMST_MAX_TEXT_SAMPLE_MB") if text else \
        (limits.sample_mb, "AMST_MAX_SAMPLE_MB")
    if size <= limit_mb * MB:
        return None
    return f"is {math.ceil(size / MB):,} MiB, over {setting} ({limit_mb:,} MiB on this server)"


def sample_floats(cfg: RunConfig) -> int:
    """Input numbers in one sample of this run (audio feature map plus video frames; text is small)."""
    present = set(cfg.modalities)
    spec = cfg.dataset.synthetic
    if spec is not None:
        audio = math.prod(spec.audio_shape)
        visual = 3 * spec.frames * spec.image_size**2
    else:
        audio = cfg.model.audio_frames * cfg.model.mel_bins
        visual = 3 * cfg.model.frames * cfg.model.image_size**2
    return audio * ("audio" in present) + visual * ("visual" in present)


# The counts a run asks for, by run-config field: the Limits setting that bounds it and what it counts.
COUNTED = {"tags": ("tags", "tags"), "epochs": ("epochs", "epochs"), "batch_size": ("batch_size", "samples"),
           "num_workers": ("num_workers", "processes"), "max_restarts": ("restarts", "restarts")}


def count_problems(request: Mapping[str, Any], limits: Limits) -> dict[str, str]:
    """Run-config field -> why its count is beyond this server's limit, read from a request as sent (valid or
    not), so that a request with several mistakes learns every limit it breaks at once, and a count beyond
    RunConfig's own bound (the store's 32-bit columns) learns this server's far smaller one."""
    out = {}
    for field, (setting, unit) in COUNTED.items():
        value = request.get(field)
        count = len(set(map(str, value))) if field == "tags" and isinstance(value, list) else value
        if isinstance(count, float) and count.is_integer():  # JSON's 1e12
            count = int(count)
        limit = getattr(limits, setting)
        if isinstance(count, int) and not isinstance(count, bool) and count > limit:
            out[field] = f"at most {limit} {unit} on this server (AMST_MAX_{setting.upper()}); got {count}"
    return out


def check_limits(cfg: RunConfig, limits: Limits) -> None:
    """Raise ConfigError naming the first field beyond a limit."""
    for field, problem in count_problems(cfg.model_dump(include=set(COUNTED)), limits).items():
        raise ConfigError(field, problem)
    floats = sample_floats(cfg)
    batch_mb = floats * min(cfg.batch_size, largest_split(cfg)) * FLOAT_BYTES / MB
    if batch_mb > limits.batch_input_mb:
        raise ConfigError("model", f"one batch of inputs would take {batch_mb:,.0f} MiB (batch_size x frames x "
                                   f"image_size^2 x 3 + audio_frames x mel_bins, as float32); this server allows "
                                   f"{limits.batch_input_mb} MiB (AMST_MAX_BATCH_INPUT_MB): make the inputs or the "
                                   "batch smaller")
    check_points(cfg, limits)
    spec = cfg.dataset.synthetic
    if spec is not None:
        data_mb = floats * sum(spec.samples.values()) * FLOAT_BYTES / MB
        if data_mb > limits.synthetic_mb:
            raise ConfigError("dataset.synthetic", f"the generated data would take {data_mb:,.0f} MiB in memory; "
                                                   f"this server allows {limits.synthetic_mb} MiB "
                                                   "(AMST_MAX_SYNTHETIC_MB): fewer samples or smaller shapes")


def largest_split(cfg: RunConfig) -> int:
    """A batch is never larger than the split it is drawn from (known only for generated data)."""
    spec = cfg.dataset.synthetic
    return max(spec.samples.values()) if spec is not None else cfg.batch_size


# ---------------------------------------------------------------- metric points a run writes

PREDICTION_POINTS = len(BOUNDED_METRICS) + len(LOSS_METRICS)  # per prediction and split: acc, acc_prob, F1, loss
GAP_POINTS = 1  # acc_gap per component with two or more modalities (amst_core.metrics.imbalance_points)
SELECTION_POINTS = 3  # per prediction model selection tracks: best_epoch, best_val_acc, test_acc_at_best (val)


def logged_series(cfg: RunConfig, method: MethodSpec) -> list[RunSeries]:
    """The run-level series this run writes: the engine's (skip speeds only under `skip: auto`, GPU ones unless
    on a CPU) and the method's own."""
    auto = cfg.skip.auto is not None and method.uses_skip
    gpu = cfg.device != "cpu"
    conditional = {"skip_speed": auto, "gpu_util": gpu, "gpu_mem_gib": gpu}
    return [s for s in ENGINE_SERIES if conditional.get(s.name, True)] + list(method.series)


def points_per_epoch(cfg: RunConfig) -> int:
    """The metric points one epoch of this run writes when its test split runs (an epoch without it writes
    fewer): every prediction of the method's modules on every split, its combinations on val and test, the gaps,
    the model selection, the learning rates and the run-level series declared by the engine and the method."""
    method, n = METHODS[cfg.method], len(cfg.modalities)
    predictions = 1 + sum(1 for prefix in method.modules if prefix)  # fused, and FULL's alt and joint
    per_modality = sum(1 for f in FAMILIES if f != FUSED) * len(method.modules) + len(method.modality_components)
    combos = len(method.combos(cfg.modalities)) if method.combos is not None else 0
    each_split = PREDICTION_POINTS * (predictions + n * per_modality) + (GAP_POINTS * per_modality if n >= 2 else 0)
    evaluated = len(SPLITS) * each_split + len(EVAL_SPLITS) * PREDICTION_POINTS * combos
    series = sum(n if s.per_modality else 1 for s in logged_series(cfg, method))
    learning_rates = len(OPTIMIZER_PARTS) + n  # each optimizer part, and each modality's encoder
    return evaluated + series + learning_rates + SELECTION_POINTS * (1 + combos)


def run_points(cfg: RunConfig) -> int:
    """At most this many metric points for the whole run."""
    return points_per_epoch(cfg) * cfg.epochs


def check_points(cfg: RunConfig, limits: Limits) -> None:
    """Refused at submission, before a first epoch trains to find it out (the store's writer keeps its own check
    as the backstop)."""
    per_epoch = points_per_epoch(cfg)
    if per_epoch * cfg.epochs > limits.points_per_run:
        raise ConfigError("epochs", f"this run would write about {per_epoch * cfg.epochs:,} metric points "
                                    f"({per_epoch} an epoch x {cfg.epochs} epochs); this server keeps at most "
                                    f"{limits.points_per_run:,} per run (AMST_MAX_POINTS_PER_RUN): fewer epochs")
