"""Where metric points go. The engine knows only the MetricSink protocol (DESIGN.md section 1)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO

from amst_core.metrics import MetricPoint
from amst_core.vocab import BRANCH, FUSED, RUN, SPLITS, VAL, family_of


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
    """The epoch's line (`epoch_line`, the one the run's log has too)."""

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
        if points:
            print(epoch_line(points, points[0].epoch, self.epochs), file=self.stream, flush=True)


def epoch_line(points: Sequence[MetricPoint], epoch: int, epochs: int) -> str:
    """The one line per epoch, for the console and the run's log, short enough to read in a narrow panel:
    `epoch 3/8  train loss 1.230  val acc 0.610 (audio 0.550 · visual 0.400) loss 1.100  test acc 0.600  12.3 s`:
    the fused prediction's numbers per split, each modality's validation branch accuracy next to the fused one
    (the best of a method's modules: AMST-FULL has two), the epoch's time and the GPU's use."""
    get = {(p.split, p.component, p.modality, p.name): p.value for p in points}
    parts = [f"epoch {epoch + 1}/{epochs}"]
    for split in SPLITS:
        acc, loss = get.get((split, FUSED, None, "acc")), get.get((split, FUSED, None, "loss"))
        text = " ".join(filter(None, (f"acc {acc:.3f}" if acc is not None else "",
                                      modality_accuracies(points, split) if split == VAL else "",
                                      f"loss {loss:.3f}" if loss is not None else "")))
        if acc is not None or loss is not None:
            parts.append(f"{split} {text}")
    seconds = get.get(("train", RUN, None, "epoch_time"))
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    util, mem = get.get(("train", RUN, None, "gpu_util")), get.get(("train", RUN, None, "gpu_mem_gib"))
    if util is not None and mem is not None:
        parts.append(f"gpu {util:.0f}% {mem:.1f} GiB")
    return "  ".join(parts)


def modality_accuracies(points: Sequence[MetricPoint], split: str) -> str:
    """`(audio 0.550 · visual 0.400)`: each modality's branch accuracy on the split, the best of a method's
    modules; empty when no branch has one."""
    best: dict[str, float] = {}
    for p in points:
        if p.modality and p.split == split and p.name == "acc" and family_of(p.component) == BRANCH:
            best[p.modality] = max(best.get(p.modality, p.value), p.value)
    return "(" + " · ".join(f"{m} {best[m]:.3f}" for m in sorted(best)) + ")" if best else ""
