"""The skip rule of AMST: modality m is trained in epoch e iff e mod k_m == 0 (epochs counted from 0).

`skip: auto` (AutoSkipSchedule) chooses the factors from measured learning speed instead of by hand: the first
`warmup` epochs train every modality; then, and every `every` epochs after, each modality's learning speed is
the least-squares slope of its helper probe's validation accuracy over every epoch so far (the probe reads the
detached embedding, so it measures what the encoder has learned whatever the head does), floored at
MIN_SPEED; a modality's factor is its speed over the slowest modality's, rounded, within [1, max_factor]. A new
factor counts from the epoch it starts: modality m is trained in epoch e iff (e - start) mod k_m == 0, so the
first epoch under a new factor trains it. Every epoch logs each factor in force (`run/<m>/skip_factor`) and every
decision its evidence (`run/<m>/skip_speed`, the slope it used).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MIN_SPEED = 1e-3  # accuracy per epoch: a flat or falling curve counts as this slow


class SkipSchedule:
    """Fixed factors: one decision, at epoch 0, that never changes."""

    def __init__(self, factors: Mapping[str, int]):
        for modality, k in factors.items():
            if int(k) < 1:
                raise ValueError(f"skip.{modality}: skip factor must be >= 1, got {k}")
        self.decisions: list[tuple[int, dict[str, int]]] = [(0, {m: int(k) for m, k in factors.items()})]

    @classmethod
    def uniform(cls, modalities: Iterable[str]) -> SkipSchedule:
        return cls({m: 1 for m in modalities})

    @property
    def factors(self) -> dict[str, int]:
        """The factors in force now (the latest decision)."""
        return self.decisions[-1][1]

    def decision_at(self, epoch: int) -> tuple[int, dict[str, int]]:
        return next(d for d in reversed(self.decisions) if d[0] <= epoch)

    def factors_at(self, epoch: int) -> dict[str, int]:
        return dict(self.decision_at(epoch)[1])

    def is_updated(self, modality: str, epoch: int) -> bool:
        start, factors = self.decision_at(epoch)
        return (epoch - start) % factors[modality] == 0

    def updated(self, epoch: int) -> tuple[str, ...]:
        """Modalities trained in this epoch, in sorted order (the order ALT updates them)."""
        return tuple(m for m in sorted(self.factors) if self.is_updated(m, epoch))

    def skipped(self, epoch: int) -> tuple[str, ...]:
        return tuple(m for m in sorted(self.factors) if not self.is_updated(m, epoch))

    def observe(self, epoch: int, helper_acc: Mapping[str, float | None]) -> dict[str, float]:
        """After an epoch's validation, with each modality's helper accuracy; returns the evidence of a decision
        taken now (the speed of each modality), empty when none was. Fixed factors never change."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (nothing for fixed factors)."""


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of values against 0, 1, 2, ..."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sum((i - mean_x) ** 2 for i in range(n))


class AutoSkipSchedule(SkipSchedule):
    """Factors decided during the run from the helpers' learning speed (module docstring)."""

    def __init__(self, modalities: Iterable[str], warmup: int, every: int, max_factor: int):
        super().__init__({m: 1 for m in modalities})
        self.warmup, self.every, self.max_factor = warmup, every, max_factor
        self.curves: dict[str, list[float]] = {m: [] for m in self.factors}

    def observe(self, epoch: int, helper_acc: Mapping[str, float | None]) -> dict[str, float]:
        for m, curve in self.curves.items():
            value = helper_acc.get(m)
            curve.append(value if value is not None else (curve[-1] if curve else 0.0))
        done = epoch + 1
        if done < self.warmup or (done - self.warmup) % self.every:
            return {}
        speeds = {m: slope(curve) for m, curve in self.curves.items()}
        slowest = max(min(speeds.values()), MIN_SPEED)
        factors = {m: max(1, min(self.max_factor, round(max(s, MIN_SPEED) / slowest))) for m, s in speeds.items()}
        self.decisions.append((done, factors))
        return speeds

    def state_dict(self) -> dict[str, Any]:
        return {"decisions": [[start, dict(f)] for start, f in self.decisions],
                "curves": {m: list(c) for m, c in self.curves.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.decisions = [(int(start), dict(f)) for start, f in state["decisions"]]
            self.curves = {m: list(c) for m, c in state["curves"].items()}
