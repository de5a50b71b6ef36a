"""Evaluating a saved run: a checkpoint's model on one split, with the metrics a training epoch logs for it."""

from __future__ import annotations

from pathlib import Path

from amst_core.config import RunConfig
from amst_core.datafiles import check_dataset
from amst_core.engine import Trainer
from amst_core.metrics import MetricPoint, imbalance_points
from amst_core.runfolder import Checkpoint, RunFolder


def evaluate_run(run_dir: Path, split: str = "test", which: Checkpoint = "best",
                 device: str | None = None) -> list[MetricPoint]:
    """Metrics of a saved run on one split, from its best or last checkpoint (FULL uses its averaged
    prediction)."""
    state = RunFolder(run_dir).load_checkpoint(which)
    cfg = RunConfig.model_validate(state["config"])
    if device is not None:
        cfg = RunConfig.model_validate({**state["config"], "device": device})
    trainer = Trainer(check_dataset(cfg), progress=False)  # the trainer trusts its caller to check the data
    trainer.method.load_model_state_dict(state["method"])
    points = trainer.evaluate(split, state["epoch"])
    return points + imbalance_points(points, split, state["epoch"])
