"""The product's words, said once: modalities, splits, metric components, run-level series, run statuses.

Every other module (library, API, worker, dashboard) takes these from here; the API serves them at
`GET /vocabulary` so the dashboard draws what the library declares instead of keeping its own lists, and a test
fails when one of these lists is spelled out anywhere else. Torch-free and service-free: anything may import it.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Literal, get_args

# --- modalities and splits --------------------------------------------------------------------------------------
Modality = Literal["audio", "text", "visual"]
MODALITIES: tuple[Modality, ...] = get_args(Modality)  # sorted: this order drives ALT updates
AUDIO, TEXT, VISUAL = MODALITIES  # for tables keyed by modality (an encoder, a file kind per modality)
Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)
TRAIN, VAL, TEST = SPLITS
EVAL_SPLITS: tuple[Split, ...] = (VAL, TEST)

# --- metric components ------------------------------------------------------------------------------------------
# A metric point's `component` says which prediction or which part of the run it measures.
FUSED = "fused"  # the model's prediction
BRANCH = "branch"  # the fusion head's logits of one modality
HELPER = "helper"  # a linear probe on one modality's detached embedding
PROTOTYPE = "prototype"  # PMR: nearest-prototype prediction of one modality
RUN = "run"  # run-level series (skip schedule, epoch time, a method's own quantity): not a prediction
COMBO_PREFIX = "combo:"  # MLA: a named combination of the branches, e.g. combo:entropy
FAMILIES: tuple[str, ...] = (FUSED, BRANCH, HELPER)
# AMST-FULL trains two modules and logs each under a prefix; "" is every other method's single module.
MODULE_PREFIXES: tuple[str, ...] = ("", "alt_", "joint_", "teacher_")  # teacher_: UMT's and G2D's teachers
# Optimizer parts a learning-rate point is logged for (component = the part, modality none); MSLR's per-encoder
# rates are run-level points with the modality set.
OPTIMIZER_PARTS: tuple[str, ...] = ("encoders", "head", "helpers")


def component(family: str, prefix: str = "") -> str:
    """`branch` -> `branch`, (`branch`, `alt_`) -> `alt_branch`; FULL's plain `alt`/`joint` are its fused ones."""
    if prefix and family == FUSED:
        return prefix.rstrip("_")
    return f"{prefix}{family}"


def combo(name: str) -> str:
    return f"{COMBO_PREFIX}{name}"


def family_of(name: str) -> str | None:
    """The family a component belongs to (`alt_branch` -> branch, `joint` -> fused), or None (run, prototype,
    combos, optimizer parts)."""
    for family in FAMILIES:
        if name in family_members(family):
            return family
    return None


def family_members(family: str) -> tuple[str, ...]:
    """Every component of a family, the plain one first: branch -> (branch, alt_branch, joint_branch)."""
    return tuple(component(family, prefix) for prefix in MODULE_PREFIXES)


# --- metric names and run-level series --------------------------------------------------------------------------
SeriesKind = Literal["bounded", "loss", "count", "quantity"]
# bounded: in [0, 1] (accuracies, F1, a 0/1 flag); loss: positive, log scale meaningful; count: a whole number
# (epochs, a skip factor); quantity: any other positive measure (seconds, samples/s, GiB, a learning rate).

BOUNDED_METRICS: tuple[str, ...] = ("acc", "acc_prob", "macro_f1")  # per prediction, in [0, 1]
LOSS_METRICS: tuple[str, ...] = ("loss",)
# The imbalance gap: strongest minus weakest modality's accuracy of one component (branch, helper, ...), modality
# none, per split and epoch (amst_core.metrics.imbalance_points); in [0, 1].
ACC_GAP = "acc_gap"
GAP_METRICS: tuple[str, ...] = (ACC_GAP,)


@dataclass(frozen=True)
class RunSeries:
    """One run-level series (component `run`): what it is, whether it has one value per modality, its kind."""

    name: str
    kind: SeriesKind
    per_modality: bool
    description: str
    split: Split = "train"

    def as_dict(self) -> dict:
        return asdict(self)


# Logged for every run by the engine, whatever the method.
ENGINE_SERIES: tuple[RunSeries, ...] = (
    RunSeries("skip", "bounded", True, "1 if the modality's encoder was updated in that epoch, else 0"),
    RunSeries("skip_factor", "count", True, "the modality's skip factor in that epoch (skip: auto changes it)"),
    RunSeries("skip_speed", "quantity", True, "skip: auto's learning speed of the modality"),
    RunSeries("epoch_time", "quantity", False, "seconds the epoch took, evaluation included"),
    RunSeries("train_time", "quantity", False, "seconds of the epoch spent training"),
    RunSeries("samples_per_s", "quantity", False, "training samples per second"),
    RunSeries("gpu_util", "quantity", False, "mean GPU utilisation over the epoch in percent (CUDA runs)"),
    RunSeries("gpu_mem_gib", "quantity", False, "peak GPU memory in GiB (CUDA runs)"),
    RunSeries("epochs_to_plateau", "count", True, "epochs until the modality's validation accuracy levelled off",
              split="val"),
)


# --- run statuses -----------------------------------------------------------------------------------------------
class RunStatus(enum.StrEnum):
    queued = "queued"
    starting = "starting"
    running = "running"
    stalled = "stalled"  # alive, but no new epoch for much longer than usual
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    lost = "lost"  # its worker stopped heartbeating and no restart is left


ACTIVE: tuple[RunStatus, ...] = (RunStatus.queued, RunStatus.starting, RunStatus.running, RunStatus.stalled)
TERMINAL: tuple[RunStatus, ...] = (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled, RunStatus.lost)
LIVE: tuple[RunStatus, ...] = (RunStatus.starting, RunStatus.running, RunStatus.stalled)  # a worker holds it
PENDING: tuple[RunStatus, ...] = (RunStatus.queued, RunStatus.starting)  # no epoch under way yet
RETRYABLE: tuple[RunStatus, ...] = (RunStatus.failed, RunStatus.cancelled, RunStatus.lost)  # a retry takes it up
# A sweep's status, derived from its runs' (amst_core.store.sweeps.status): finished means every run ended, some
# not succeeded; cancelling, that its runs are being cancelled.
SweepStatus = Literal["queued", "running", "cancelling", "succeeded", "finished", "cancelled"]
SWEEP_STATUSES: tuple[SweepStatus, ...] = get_args(SweepStatus)
SWEEP_ACTIVE: tuple[SweepStatus, ...] = SWEEP_STATUSES[:3]
# A worker's state, judged from its row (GET /workers): alive, heartbeating within the lost limit; lost, its
# heartbeats stopped without a word (killed, its node or job gone); stopped, it said it was stopping.
WorkerState = Literal["alive", "lost", "stopped"]


def vocabulary() -> dict:
    """Everything above as plain JSON, for `GET /vocabulary` (methods and their series come from the catalog)."""
    return {
        "modalities": list(MODALITIES),
        "splits": list(SPLITS),
        "eval_splits": list(EVAL_SPLITS),
        "components": {
            "fused": FUSED, "branch": BRANCH, "helper": HELPER, "prototype": PROTOTYPE, "run": RUN,
            "combo_prefix": COMBO_PREFIX, "module_prefixes": list(MODULE_PREFIXES),
            "families": {family: list(family_members(family)) for family in FAMILIES},
            "optimizer_parts": list(OPTIMIZER_PARTS),
        },
        "metrics": {"bounded": list(BOUNDED_METRICS), "loss": list(LOSS_METRICS), "gap": list(GAP_METRICS)},
        "series_kinds": list(get_args(SeriesKind)),
        "engine_series": [s.as_dict() for s in ENGINE_SERIES],
        "statuses": {"all": [s.value for s in RunStatus], "active": [s.value for s in ACTIVE],
                     "terminal": [s.value for s in TERMINAL], "live": [s.value for s in LIVE],
                     "pending": [s.value for s in PENDING], "retryable": [s.value for s in RETRYABLE]},
        "sweep_statuses": {"all": list(SWEEP_STATUSES), "active": list(SWEEP_ACTIVE)},
    }
