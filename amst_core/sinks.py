"""Where metric points go. The engine knows only the MetricSink protocol (DESIGN.md section 1)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO

from amst_core.metrics import MetricPoint


class MetricSink(Protocol):
    def begin(self, start_epoch: int) -> None:
        """Called once before training; drop anything recorded for epochs >= start_epoch (a resumed run
        repeats them), so the series have no duplicates and no gaps."""

    def write(self, points: Sequence[MetricPoint]) -> None:
        """One epoch's points, in one call."""

    def pending(self) -> list[MetricPoint]:
        """Points accepted but not stored yet (kept in the checkpoint meanwhile); [] for a sink that writes at
        once."""

    def close(self) -> None:
        """Everything accepted is stored."""


class WritesAtOnce:
    """A sink with nothing pending and nothing to close."""

    def pending(self) -> list[MetricPoint]:
        return []

    def close(self) -> None:
        pass


class JsonlSink(WritesAtOnce):
    """One JSON object per line (the fields of MetricPoint)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file: TextIO | None = None

    def begin(self, start_epoch: int) -> None:
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if _epoch_of(line) < start_epoch]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a")

    def write(self, points: Sequence[MetricPoint]) -> None:
        assert self.file is not None, "begin() first"
        self.file.write("".join(json.dumps(p.to_dict()) + "\n" for p in points))
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _epoch_of(line: str) -> float:
    """The epoch of a JSONL line; a line cut short by a kill mid-write counts as not written."""
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return float("inf")


class MemorySink(WritesAtOnce):
    """Keeps points in a list (tests, notebooks)."""

    def __init__(self) -> None:
        self.points: list[MetricPoint] = []

    def begin(self, start_epoch: int) -> None:
        self.points = [p for p in self.points if p.epoch < start_epoch]

    def write(self, points: Sequence[MetricPoint]) -> None:
        self.points.extend(points)


class ConsoleSink(WritesAtOnce):
    """A one-line summary per epoch: fused accuracy per split and each modality's branch and helper."""

    def __init__(self, epochs: int, stream: TextIO | None = None):
        self.epochs = epochs
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # resolved late: stderr may be replaced after construction

    def begin(self, start_epoch: int) -> None:
        if start_epoch:
            print(f"resuming at epoch {start_epoch}", file=self.stream)

    def write(self, points: Sequence[MetricPoint]) -> None:
        if not points:
            return
        get = {(p.split, p.component, p.modality, p.name): p.value for p in points}
        epoch = points[0].epoch
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        for split in ("train", "val", "test"):
            acc = get.get((split, "fused", None, "acc"))
            if acc is not None:
                parts.append(f"{split} acc {acc:.4f}")
        modalities = sorted({p.modality for p in points if p.component.endswith("branch") and p.modality})
        for m in modalities:
            branch = [v for (s, c, mod, n), v in get.items() if s == "val" and mod == m and n == "acc"
                      and c.endswith("branch")]
            helper = [v for (s, c, mod, n), v in get.items() if s == "val" and mod == m and n == "acc"
                      and c.endswith("helper")]
            if branch:
                parts.append(f"{m} branch {max(branch):.3f} helper {max(helper, default=float('nan')):.3f}")
        seconds = get.get(("train", "run", None, "epoch_time"))
        if seconds is not None:
            parts.append(f"{seconds:.1f}s")
        print(" | ".join(parts), file=self.stream, flush=True)
