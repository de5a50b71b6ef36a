"""Progress inside an epoch: what a worker's heartbeat reports between two epochs."""

from __future__ import annotations

from amst_core.engine import Trainer
from tests.kit.tiny import tiny_config


def test_live_progress_counts_batches_of_each_pass() -> None:
    seen: list[dict] = []
    trainer = Trainer(tiny_config("amst_full", epochs=1), progress=False)
    trainer.should_stop = lambda: bool(seen.append(trainer.live.snapshot())) and False  # record, never stop
    assert trainer.live.snapshot() is None, "nothing to say before the first batch"
    trainer.fit()
    train = [p for p in seen if p["split"] == "train"]
    assert [p["batch"] for p in train] == [0, 1, 2] and {p["batches"] for p in train} == {3}  # 48 samples / 16
    assert {p["split"] for p in seen} >= {"train", "val"} and all(p["epoch"] == 0 for p in seen)
    last = trainer.live.snapshot()
    assert last["batch"] == last["batches"] and last["samples_per_s"] > 0
