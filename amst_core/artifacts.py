"""What runs keep on disk under AMST_ARTIFACTS, and how long: each run's disk use, and `amst gc`.

An AMST-FULL run at the reference width keeps 537 MB whatever the data: last.pt, four ResNet-18s and their
momentum buffers (358 MB, what exact resume needs), and best.pt, the best epoch's weights alone (179 MB), so a
service that keeps every checkpoint of every run fills its disk. The policy (settings, environment):
- AMST_CHECKPOINT_RETENTION_DAYS (30): a run that ended longer ago than this loses its checkpoints; its
  metrics, config and summary stay. A retried run whose last.pt is gone starts again from epoch 0.
- AMST_KEEP_BEST_CHECKPOINT (true): keep best.pt (the model) and remove only last.pt (what resume needs).
- folders of runs the store no longer knows, and temporary files a crash left, older than an hour, go too.
The API applies it every AMST_GC_INTERVAL_S; `amst gc` applies it now (`--dry-run` only says what it would do).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from amst_core.runfolder import Checkpoint, RunFolder
from amst_core.settings import Settings
from amst_core.store.models import TERMINAL, Run, utcnow

LEFTOVER_AGE_S = 3600.0  # a folder or temporary file younger than this may belong to a run being set up


def disk_use(run_dir: Path) -> dict[str, int]:
    """Bytes per file of a run's folder, by path relative to it (a handful of files: cheap to walk)."""
    if not run_dir.is_dir():
        return {}
    sizes = {}
    for path in sorted(run_dir.rglob("*")):
        # A live run's writer renames its temporary checkpoint between the listing and the stat: gone is fine.
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                sizes[str(path.relative_to(run_dir))] = path.stat().st_size
    return sizes


@dataclass
class GcReport:
    removed: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes)

    @property
    def freed_bytes(self) -> int:
        return sum(size for _, size in self.removed)

    def add(self, path: Path, dry_run: bool) -> None:
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        self.removed.append((str(path), size))
        if not dry_run:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def collect(s: Session, settings: Settings, dry_run: bool = False) -> GcReport:
    """Apply the retention policy once; returns what was (or, dry, would be) removed."""
    report = GcReport()
    runs_dir = settings.artifacts_dir / "runs"
    if not runs_dir.is_dir():
        return report
    cutoff = utcnow() - timedelta(days=settings.checkpoint_retention_days)
    expired = s.scalars(select(Run.id).where(Run.status.in_(TERMINAL), Run.finished_at < cutoff))
    doomed: list[Checkpoint] = ["last"] if settings.keep_best_checkpoint else ["last", "best"]
    for run_id in expired:
        for which in doomed:
            path = RunFolder(runs_dir / run_id).checkpoint(which)
            if path.is_file():
                report.add(path, dry_run)
    known = set(s.scalars(select(Run.id)))
    old = time.time() - LEFTOVER_AGE_S
    for folder in runs_dir.iterdir():
        if folder.is_dir() and folder.name not in known and folder.stat().st_mtime < old:
            report.add(folder, dry_run)  # its run was deleted, or the store was reset
    for folder in (RunFolder(path) for path in runs_dir.iterdir() if path.name in known):
        for tmp in folder.temporary_files():
            if tmp.stat().st_mtime < old:
                report.add(tmp, dry_run)  # a write that a crash interrupted
    return report
