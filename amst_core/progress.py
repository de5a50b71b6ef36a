"""Where the engine is inside an epoch, for a worker's heartbeat to report between two epochs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class LiveProgress:
    """The pass in progress (plain fields: a reader in another thread sees a consistent enough snapshot without a
    lock)."""

    epoch: int = -1
    split: str = ""
    batch: int = 0
    batches: int = 0
    samples: int = 0
    started: float = 0.0  # time.time() when this split's pass began
    updated: float = 0.0  # time.time() when the last batch finished

    def begin(self, epoch: int, split: str, batches: int) -> None:
        self.epoch, self.split, self.batch, self.batches, self.samples = epoch, split, 0, batches, 0
        self.started = self.updated = time.time()

    def advance(self, samples: int) -> None:
        self.batch += 1
        self.samples += samples
        self.updated = time.time()

    def snapshot(self) -> dict[str, Any] | None:
        if self.epoch < 0:
            return None
        seconds = self.updated - self.started
        return {"epoch": self.epoch, "split": self.split, "batch": self.batch, "batches": self.batches,
                "samples_per_s": round(self.samples / seconds, 2) if seconds > 0 and self.samples else None,
                "updated_at": self.updated}
