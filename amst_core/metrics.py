"""Classification metrics accumulated on the device and read once per epoch, and the MetricPoint record.

Definitions follow the reference (amst_method.md section 4): accuracy; mean loss = sum of per-batch mean CE
divided by the number of batches; acc_prob = for each true class the mean max-softmax probability over samples
correctly predicted as that class (0 if none), averaged over all classes; plus macro-F1 (our addition), averaged
over the classes that occur in the labels or the predictions (as scikit-learn does).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from amst_core import vocab
from amst_core.distributed import SINGLE, Ranks, sum_across
from amst_core.vocab import ACC_GAP, HELPER, RUN, VAL

Key = tuple[str, str | None]  # (component, modality)


@dataclass
class MetricPoint:
    split: str
    component: str
    modality: str | None
    name: str
    epoch: int
    value: float
    step: int = 0
    run_id: str = ""
    attempt: int = 1
    recorded_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def series(self) -> tuple[str, str, str | None, str]:
        return (self.split, self.component, self.modality, self.name)


class ClassificationMeter:
    """Sums for one (component, modality) over an epoch; no host sync until `compute`."""

    def __init__(self, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
        self.correct_conf = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.batches = 0.0  # on several ranks, each rank's share of every global batch: their sum is the count

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, share: float = 1.0) -> None:
        """`share`: this batch's fraction of its global batch (1 on one rank), so that the loss is the mean over
        global batches of each global batch's mean loss once the ranks' sums are added."""
        logits = logits.float()
        c = self.num_classes
        loss = F.cross_entropy(logits, labels).double()
        self.loss_sum += loss * share if share != 1.0 else loss
        self.batches += share
        probs = logits.softmax(dim=1)
        conf, pred = probs.max(dim=1)
        # scatter_add and a one-hot product instead of bincount and boolean indexing: no host-device sync
        # on CUDA (bincount and masks read sizes back), and bitwise deterministic.
        cell = labels * c + pred
        self.confusion.view(-1).scatter_add_(0, cell, torch.ones_like(cell))
        hit = (pred == labels).double()
        self.correct_conf += F.one_hot(labels, c).double().T @ (conf.double() * hit)

    def reduce(self, ranks: Ranks) -> None:
        """Every rank's sums added up: the epoch's meters over the global batches (in place, on every rank)."""
        sum_across(self.confusion, ranks)
        sum_across(self.correct_conf, ranks)
        totals = sum_across(torch.stack([self.loss_sum, torch.tensor(self.batches, dtype=torch.float64,
                                                                     device=self.loss_sum.device)]), ranks)
        self.loss_sum, self.batches = totals[0], round(totals[1].item(), 6)

    def compute(self) -> dict[str, float]:
        confusion = self.confusion.double().cpu()
        total = confusion.sum().item()
        tp = confusion.diag()
        support = confusion.sum(dim=1)
        predicted = confusion.sum(dim=0)
        acc_prob = torch.where(tp > 0, self.correct_conf.cpu() / tp.clamp(min=1), torch.zeros_like(tp))
        f1_den = support + predicted
        present = f1_den > 0
        f1 = torch.where(present, 2 * tp / f1_den.clamp(min=1), torch.zeros_like(tp))
        return {
            "loss": (self.loss_sum.item() / self.batches) if self.batches else float("nan"),
            "acc": round(tp.sum().item() / total, 4) if total else 0.0,
            "acc_prob": acc_prob.mean().item(),
            "macro_f1": (f1[present].mean().item()) if present.any() else 0.0,
        }


class EpochMeters:
    """One meter per (component, modality) key, created on first use."""

    def __init__(self, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.device = device
        self.meters: dict[Key, ClassificationMeter] = {}

    def update(self, outputs: dict[Key, torch.Tensor], labels: torch.Tensor, share: float = 1.0) -> None:
        for key, logits in outputs.items():
            meter = self.meters.get(key)
            if meter is None:
                meter = self.meters[key] = ClassificationMeter(self.num_classes, self.device)
            meter.update(logits, labels, share)

    def points(self, split: str, epoch: int, ranks: Ranks = SINGLE) -> list[MetricPoint]:
        """The epoch's points; on several ranks those of the global batches, the same on every rank (every rank
        has the same keys: the same method, outputs and epoch)."""
        out = []
        for (component, modality), meter in sorted(self.meters.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            if ranks.distributed:
                meter.reduce(ranks)
            for name, value in meter.compute().items():
                out.append(MetricPoint(split, component, modality, name, epoch, value))
        return out


def imbalance_points(points: list[MetricPoint], split: str, epoch: int) -> list[MetricPoint]:
    """Strongest minus weakest per-modality accuracy, for every component with two or more modalities."""
    by_component: dict[str, list[float]] = {}
    for p in points:
        if p.split == split and p.name == "acc" and p.modality is not None:
            by_component.setdefault(p.component, []).append(p.value)
    return [
        MetricPoint(split, component, None, ACC_GAP, epoch, max(accs) - min(accs))
        for component, accs in sorted(by_component.items())
        if len(accs) >= 2
    ]


PROBES = (HELPER, vocab.component(HELPER, "alt_"))  # a modality's linear probe on its own embedding (FULL: module A's)
PLATEAU_TOLERANCE = 0.01  # one accuracy point


class Plateau:
    """Each modality's epochs to plateau: 1 + the first epoch from which its val probe (helper) accuracy stays
    within one point of the best it has reached; written every epoch as it stands then (run-level series
    `epochs_to_plateau` per modality), so the last value is the run's. A fast modality plateaus early, a slow
    one late: the spread is the imbalance AMST's skip factors answer."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}

    def update(self, epoch: int, points: list[MetricPoint]) -> list[MetricPoint]:
        probes = {}
        for p in points:
            if p.split == VAL and p.name == "acc" and p.modality is not None and p.component in PROBES:
                probes.setdefault(p.modality, {})[p.component] = p.value
        out = []
        for modality, by_component in sorted(probes.items()):
            accs = self.history.setdefault(modality, [])
            accs.append(next(by_component[c] for c in PROBES if c in by_component))
            out.append(MetricPoint(VAL, RUN, modality, "epochs_to_plateau", epoch, 1 + plateau_epoch(accs)))
        return out

    def state_dict(self) -> dict[str, list[float]]:
        return {m: list(a) for m, a in self.history.items()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.history = {m: list(a) for m, a in state.items()}


def plateau_epoch(accs: list[float], tolerance: float = PLATEAU_TOLERANCE) -> int:
    """The first index from which every value is within `tolerance` of the maximum."""
    floor = max(accs) - tolerance - 1e-9
    first = len(accs) - 1
    while first > 0 and accs[first - 1] >= floor:
        first -= 1
    return first
