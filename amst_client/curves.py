"""A run's metrics as curves, one per series, read incrementally: each read asks only for the epochs after the
newest one held (`since_epoch`). When a later attempt resumed the run from a checkpoint, the API says from which
epoch the points held are replaced (`superseded_from`): those are dropped and read again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from amst_client.types import Metrics, Run


class SeriesKey(NamedTuple):
    """Which curve: the split, the component (fused, branch, helper, run, ...), the modality (None for the fused
    prediction and run-wide series) and the metric name (acc, loss, epoch_time, ...)."""

    split: str
    component: str
    modality: str | None
    name: str


@dataclass(frozen=True)
class Curve:
    epochs: list[int]
    values: list[float | None]  # None where the value was not finite (a diverged loss)

    def last(self) -> float | None:
        return self.values[-1] if self.values else None


@dataclass
class Curves:
    run_id: str
    run: Run | None = None  # the run as it was at the last read
    next_since_epoch: int = -1  # ask for the epochs after this one next time
    points: dict[SeriesKey, dict[int, float | None]] = field(default_factory=dict)

    def __getitem__(self, key: tuple[str, str, str | None, str]) -> Curve:
        by_epoch = self.points[SeriesKey(*key)]
        epochs = sorted(by_epoch)
        return Curve(epochs, [by_epoch[e] for e in epochs])

    def __contains__(self, key: object) -> bool:
        return key in self.points

    def __iter__(self) -> Iterator[SeriesKey]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.points)

    def keys(self) -> list[SeriesKey]:
        return sorted(self.points, key=lambda k: (k.split, k.component, k.modality or "", k.name))

    def select(self, split: str | None = None, component: str | None = None, modality: str | None = None,
               name: str | None = None) -> dict[SeriesKey, Curve]:
        """The curves matching every part given (e.g. split="val", name="acc": one per component and modality)."""
        wanted = {"split": split, "component": component, "modality": modality, "name": name}
        return {k: self[k] for k in self.keys()
                if all(v is None or getattr(k, part) == v for part, v in wanted.items())}

    def replaced_from(self, body: Metrics) -> int | None:
        """The first epoch whose points held are no longer the run's, by this newer answer: another attempt resumed
        there (the API's superseded_from; a server that does not say it: from the start). None: all still hold."""
        if self.run is None or body["run"]["attempt"] == self.run["attempt"]:
            return None
        start = body.get("superseded_from")
        return 0 if start is None else start

    def drop_from(self, epoch: int) -> None:
        """Forget the points of `epoch` and later; the next read asks for them again."""
        for curve in self.points.values():
            for e in [e for e in curve if e >= epoch]:
                del curve[e]
        self.points = {k: v for k, v in self.points.items() if v}
        self.next_since_epoch = min(self.next_since_epoch, epoch - 1)

    def merge(self, body: Metrics) -> None:
        for s in body["series"]:
            curve = self.points.setdefault(SeriesKey(s["split"], s["component"], s["modality"], s["name"]), {})
            curve.update(zip(s["epochs"], s["values"], strict=True))
        self.run = body["run"]
        self.next_since_epoch = body["next_since_epoch"]
