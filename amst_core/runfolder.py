"""A run's folder, said once: where each file lives, how it is written, and what a checkpoint holds.

    <run folder>/config.yaml          the run's config, every default filled in
                 metrics.jsonl        one metric point per line (`amst train`; a worker's run stores them in the
                                      database instead)
                 summary.json         the run's summary, written once every point is stored
                 checkpoints/last.pt  everything exact resume needs, rewritten every `checkpoint_every` epochs
                 checkpoints/best.pt  the best epoch's model alone (evaluation, download)
                 logs/output.log      what was logged for the run (amst_core.runlog; a worker's runs)

Every file is written atomically (a reader or a resumed run sees the old file or the new one, never half of one),
and a full disk is said as such (StorageFull). The paths are torch-free: the API serves checkpoints from here and
never imports torch; saving and loading tensors import it when called.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from amst_core.runlog import LOG_FILE
from amst_core.vocab import FUSED

if TYPE_CHECKING:
    import torch

# 2: per-modality encoder groups, `selection` (1: one encoder group, `best`, no saved points; it still loads)
CHECKPOINT_VERSION = 2
Checkpoint = Literal["best", "last"]
CHECKPOINTS: tuple[Checkpoint, ...] = ("best", "last")
TEMPORARY_SUFFIX = ".tmp"  # a write in progress, or one a crash interrupted


@dataclass(frozen=True)
class RunFolder:
    """One run's folder; nothing is created until something is written."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def provenance(self) -> Path:
        return self.path / "provenance.json"

    @property
    def log(self) -> Path:
        return self.path / LOG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: Checkpoint = "last") -> Path:
        return self.checkpoints / f"{which}.pt"

    def can_resume(self) -> bool:
        """last.pt is there: a resumed, restarted or retried run continues from it."""
        return self.checkpoint("last").exists()

    def holds_run(self) -> bool:
        """A run has trained here (`amst train` refuses to train a new one over it)."""
        return self.metrics.exists()

    def temporary_files(self) -> list[Path]:
        """Checkpoint writes in progress, or left by a crash."""
        return sorted(self.checkpoints.glob(f"*{TEMPORARY_SUFFIX}"))

    # ---- writing ------------------------------------------------------------------------------------------------

    def write_text(self, path: Path, text: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: f.write(text.encode()))

    def write_json(self, path: Path, data: Any) -> None:
        self.write_text(path, json.dumps(data, indent=2))

    def save_checkpoint(self, which: Checkpoint, state: dict[str, Any]) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        save_atomic(state, self.checkpoint(which))

    def load_checkpoint(self, which: Checkpoint = "last", device: torch.device | str = "cpu") -> dict[str, Any]:
        """A checkpoint of any version, with today's fields (RNG states must be loaded on the CPU)."""
        return upgraded(load_checkpoint(self.checkpoint(which), device))


# ---- atomic writes ------------------------------------------------------------------------------------------------

def find_run(ref: str | Path) -> RunFolder:
    """A run named on the command line: a run folder (`amst train --out`), or the id of a run of this machine's
    service (AMST_ARTIFACTS/runs/<id>). A FileNotFoundError says where it looked."""
    from amst_core.settings import get_settings

    given = Path(ref)
    if given.is_dir():
        folder = RunFolder(given)
    else:
        folder = RunFolder(get_settings().run_dir(str(ref)))
        if not folder.path.is_dir():
            raise FileNotFoundError(f"{ref}: neither a run folder nor the id of a run under AMST_ARTIFACTS "
                                    f"({folder.path.parent})")
    if not (folder.config.exists() or folder.provenance.exists()):
        raise FileNotFoundError(f"{folder.path} holds no {folder.config.name} or {folder.provenance.name}: not a "
                                "run folder")
    return folder


class StorageFull(OSError):
    """The artifacts disk is full: said as such, not as a serialization error."""


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write to a temporary file beside `path`, flush it to the disk, then rename it over `path`: a reader (and a
    resumed run) sees the old file or the new one, never half of one. A full disk removes the temporary file
    and raises StorageFull naming the folder."""
    tmp = path.with_name(path.name + TEMPORARY_SUFFIX)
    try:
        with open(tmp, "wb") as f:  # a Python file: a full disk is an OSError, not torch's opaque RuntimeError
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        full = disk_full(err)
        if full is not None:
            free = shutil.disk_usage(path.parent).free
            raise StorageFull(full, f"no space left on device for checkpoints at {path.parent} "
                                    f"({free / 2**20:.0f} MiB free); free some space (`amst gc` removes old "
                                    "runs' checkpoints), then retry the run") from None
        raise


def disk_full(err: BaseException | None) -> int | None:
    """ENOSPC or EDQUOT anywhere in the chain: torch's writer turns the OSError into a RuntimeError of its own
    while cleaning up."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err.errno
        err = err.__cause__ or err.__context__
    return None


# ---- the checkpoint format ----------------------------------------------------------------------------------------

def save_atomic(obj: Any, path: Path) -> None:
    import torch

    write_atomic(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint file as saved (`RunFolder.load_checkpoint` also brings an older version's fields up to date)."""
    import torch

    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=device, weights_only=True)  # never unpickles code


def model_checkpoint(*, epoch: int, config: dict[str, Any], classes: list[str], method: dict[str, Any],
                     selection: dict[str, Any], provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """best.pt: the model of one epoch, what evaluation and download need, and what it can be traced to."""
    return {"version": CHECKPOINT_VERSION, "epoch": epoch, "config": config, "classes": classes, "method": method,
            "selection": selection, "provenance": provenance}


def resume_checkpoint(model: dict[str, Any], *, method: dict[str, Any], plateau: dict[str, Any],
                      rng: dict[str, Any], points: list[dict[str, Any]]) -> dict[str, Any]:
    """last.pt: the model checkpoint's fields with the method's whole state (optimizers, schedulers, scaler), and
    what resuming needs: RNG states, and the points no sink has made durable yet (a resumed run writes them first,
    so that a crash between the checkpoint and the metrics leaves no gap in the curves)."""
    return {**model, "method": method, "plateau": plateau, "rng": rng, "points": points}


def upgraded(state: dict[str, Any]) -> dict[str, Any]:
    """Today's top-level fields from a checkpoint of any version: version 1 kept the fused prediction's best
    record as `best` and saved no points. (The method's own state reads both versions: Method.load_state_dict.)"""
    fields = {"plateau": {}, "points": [], **state}
    if not fields.get("selection"):
        fields["selection"] = {FUSED: state["best"]} if "best" in state else {}  # the primary selection
    return fields


# ---- RNG states ---------------------------------------------------------------------------------------------------

def rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG a run draws from. Only the run's own GPU: a resumed run may land on a worker that sees
    a different number of GPUs."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"] and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][0], device)
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
