"""Checkpoints under faults: a full disk (a real small filesystem when this process may mount one, else a write
that fails with ENOSPC), and a crash between an epoch's checkpoint and its metrics. Nothing is lost, nothing is
claimed that resume cannot continue from, and the error says "disk"."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from amst_core.engine import Trainer
from amst_core.runfolder import StorageFull, load_checkpoint
from amst_core.sinks import MemorySink
from tests.kit.tiny import tiny_config
from tests.kit.training import comparable


@contextlib.contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path | None]:
    """A tmpfs of `size` at `where`, or None when this process may not mount one (not root, no CAP_SYS_ADMIN)."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True).returncode == 0
    try:
        yield where if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], check=False)


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").glob("*.tmp"))


def no_space_after(calls: int):
    """torch.save as it behaves on a disk that fills up: the first `calls` saves work, later ones write a bit
    and fail with ENOSPC."""
    real = torch.save
    count = {"n": 0}

    def save(obj, f, *args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kwargs)

    return save


def check_full_disk_run(out: Path, trainer: Trainer, sink: MemorySink) -> None:
    with pytest.raises(StorageFull, match=r"no space left on device for checkpoints at .*checkpoints") as err:
        trainer.fit()
    assert err.value.errno == errno.ENOSPC
    assert leftovers(out) == [], "no partial checkpoint is left behind"
    saved = load_checkpoint(out / "checkpoints" / "last.pt")["epoch"]
    assert {p.epoch for p in sink.points} == set(range(saved + 1)), \
        "no epoch's metrics are stored beyond the last checkpoint that resume can use"


def test_a_full_disk_says_so_and_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_config("amst_joint", epochs=3, skip={"audio": 2})
    reference = MemorySink()
    Trainer(cfg, sinks=[reference], progress=False).fit()

    out, sink = tmp_path / "run", MemorySink()
    with monkeypatch.context() as m:
        # epoch 0 (an improvement: last.pt and best.pt) saved, epoch 1 hits the full disk
        m.setattr(torch, "save", no_space_after(2))
        check_full_disk_run(out, Trainer(cfg, out_dir=out, sinks=[sink], progress=False), sink)
    trainer = Trainer(cfg, out_dir=out, sinks=[sink], progress=False)  # space freed: retry
    trainer.resume()
    trainer.fit()
    assert comparable(sink.points) == comparable(reference.points)


def test_a_real_full_filesystem(tmp_path: Path) -> None:
    cfg = tiny_config("amst_full", epochs=2)
    with small_filesystem(tmp_path / "small", "600k") as fs:
        if fs is None:
            pytest.skip("cannot mount a tmpfs here (needs root); the ENOSPC hook test covers the logic")
        out, sink = fs / "run", MemorySink()
        trainer = Trainer(cfg, out_dir=out, sinks=[sink], progress=False)
        with pytest.raises(StorageFull, match="no space left on device for checkpoints") as err:
            trainer.fit()
        assert "MiB free" in str(err.value) and leftovers(out) == []
        assert sink.points == [], "the first epoch's checkpoint did not fit: its metrics are not claimed"


class CrashOnWrite(MemorySink):
    """Dies (as a SIGKILL would) when asked to store epoch `at`: after its checkpoint, before its metrics."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def write(self, points) -> None:
        if points and points[0].epoch == self.at:
            raise KeyboardInterrupt("killed")
        super().write(points)


def test_a_crash_between_checkpoint_and_metrics_leaves_no_gap(tmp_path: Path) -> None:
    cfg = tiny_config("amst_alt", epochs=3, skip={"audio": 2})
    reference = MemorySink()
    Trainer(cfg, sinks=[reference], progress=False).fit()

    out, crashing = tmp_path / "run", CrashOnWrite(at=1)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, out_dir=out, sinks=[crashing], progress=False).fit()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1, "epoch 1 was saved"
    assert {p.epoch for p in crashing.points} == {0}, "but its metrics never arrived"
    sink = MemorySink()
    sink.points = list(crashing.points)
    trainer = Trainer(cfg, out_dir=out, sinks=[sink], progress=False)
    trainer.resume()
    assert trainer.start_epoch == 2
    trainer.fit()  # writes the saved epoch 1 first, then trains epoch 2
    assert comparable(sink.points) == comparable(reference.points)
