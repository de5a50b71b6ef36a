"""The skip rule of AMST: modality m is trained in epoch e iff e mod k_m == 0 (epochs counted from 0)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SkipSchedule:
    factors: Mapping[str, int]

    def __post_init__(self) -> None:
        for modality, k in self.factors.items():
            if int(k) < 1:
                raise ValueError(f"skip.{modality}: skip factor must be >= 1, got {k}")

    @classmethod
    def uniform(cls, modalities: Iterable[str]) -> SkipSchedule:
        return cls({m: 1 for m in modalities})

    def is_updated(self, modality: str, epoch: int) -> bool:
        return epoch % self.factors[modality] == 0

    def updated(self, epoch: int) -> tuple[str, ...]:
        """Modalities trained in this epoch, in sorted order (the order ALT updates them)."""
        return tuple(m for m in sorted(self.factors) if self.is_updated(m, epoch))

    def skipped(self, epoch: int) -> tuple[str, ...]:
        return tuple(m for m in sorted(self.factors) if not self.is_updated(m, epoch))
