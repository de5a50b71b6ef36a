"""Model selection, decided in one place (here): which epoch is best, and the test accuracy at it.

As the reference does: after each epoch, the fused prediction's validation accuracy (rounded to 4 dp by the
metrics) is compared with the best so far, and only a strictly greater one is an improvement; the test split is
evaluated on improving epochs (every epoch for some methods), and best.pt follows the fused prediction. A method
may have more predictions selected the same way (MLA's weighted combinations): each is tracked on its own and
reported in the summary.

Every epoch the selection is written as run-level points (component `run`, split `val`): `best_epoch`,
`best_val_acc`, `test_acc_at_best` for the fused prediction, and `<name>@<component>` for any other. Sinks store
them; none decides anything (the run store's best columns are copied from them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from amst_core.metrics import MetricPoint
from amst_core.vocab import FUSED, RUN, TEST, VAL

PRIMARY = FUSED
NAMES = ("best_epoch", "best_val_acc", "test_acc_at_best")


@dataclass
class Best:
    epoch: int = -1
    val_acc: float = -1.0
    test_acc: float | None = None
    test_modalities: dict[str, dict[str, float]] = field(default_factory=dict)  # component -> modality -> acc


def accuracy(points: Sequence[MetricPoint], split: str, component: str) -> float | None:
    return next((p.value for p in points if p.split == split and p.component == component and p.name == "acc"
                 and p.modality is None), None)


def point_name(name: str, component: str) -> str:
    return name if component == PRIMARY else f"{name}@{component}"


class ModelSelection:
    def __init__(self, components: Sequence[str] = ()):
        self.bests: dict[str, Best] = {c: Best() for c in (PRIMARY, *components)}

    @property
    def best(self) -> Best:
        """The fused prediction's: the one best.pt and the run's best columns follow."""
        return self.bests[PRIMARY]

    def improves(self, val_points: Sequence[MetricPoint]) -> bool:
        value = accuracy(val_points, VAL, PRIMARY)
        return value is not None and value > self.best.val_acc

    def update(self, epoch: int, points: Sequence[MetricPoint]) -> list[MetricPoint]:
        """Take in one epoch's val (and, where it ran, test) points; returns the selection points of the epoch."""
        for component, best in self.bests.items():
            value = accuracy(points, VAL, component)
            if value is not None and value > best.val_acc:
                modalities = per_modality_test(points) if component == PRIMARY else {}
                self.bests[component] = Best(epoch, value, accuracy(points, TEST, component), modalities)
        return self.points(epoch)

    def points(self, epoch: int) -> list[MetricPoint]:
        out = []
        for component, best in self.bests.items():
            if best.epoch < 0:
                continue
            values = {"best_epoch": float(best.epoch), "best_val_acc": best.val_acc, "test_acc_at_best": best.test_acc}
            out += [MetricPoint(VAL, RUN, None, point_name(name, component), epoch, value)
                    for name, value in values.items() if value is not None]
        return out

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per selected prediction other than the fused one: its best epoch, val accuracy and test at it."""
        return {c: {"best_epoch": b.epoch, "best_val_acc": b.val_acc, "test_acc_at_best": b.test_acc}
                for c, b in self.bests.items() if c != PRIMARY}

    def state_dict(self) -> dict[str, Any]:
        return {c: asdict(b) for c, b in self.bests.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for component, best in state.items():
            if component in self.bests:
                self.bests[component] = Best(**best)


def per_modality_test(points: Sequence[MetricPoint]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for p in points:
        if p.split == TEST and p.name == "acc" and p.modality is not None:
            out.setdefault(p.component, {})[p.modality] = p.value
    return out


def selected(points: Sequence[MetricPoint]) -> dict[str, float]:
    """The fused prediction's selection among these points (what the run store's best columns hold)."""
    return {p.name: p.value for p in points if p.component == RUN and p.split == VAL and p.name in NAMES}
