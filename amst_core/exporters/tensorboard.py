"""TensorBoard: each run is a folder `<target>/<run id>/` holding an event file with every point as a scalar
(named by amst_core.exporters.naming, step = epoch), the config (YAML), the provenance and the summary (JSON) as
text under `amst/`, and the config as hyperparameters (the HParams tab sets runs side by side)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from amst_core.config import ConfigError
from amst_core.exporters.naming import as_text, flattened, safe_name, tag_of
from amst_core.exporters.record import RunRecord
from amst_core.extras import require
from amst_core.metrics import MetricPoint

EVENT_FILES = "events.out.tfevents.*"
# The HParams tab's columns: the fused prediction's numbers, which every method logs.
HPARAM_METRICS = ("val/acc/fused", "val/loss/fused", "test/acc/fused")


def run_folder(target: Path, run_id: str) -> Path:
    """The run's own folder: its id as one plain folder name."""
    name = safe_name(run_id).replace("/", "_")
    return target / (name if name.strip(".") else "_")


class TensorBoardRun:
    """An event file being written; `purge_from`: TensorBoard hides what earlier files hold from this step on (a
    resumed run repeats those epochs)."""

    def __init__(self, target: Path, run_id: str, purge_from: int | None = None):
        require("tensorboard", "export", "TensorBoard export")
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_folder(target, run_id)
        self.writer = SummaryWriter(str(self.path), purge_step=purge_from)

    def scalars(self, points: Sequence[MetricPoint]) -> None:
        for p in points:
            self.writer.add_scalar(tag_of(p), p.value, p.epoch, walltime=p.recorded_at)
        self.writer.flush()

    def describe(self, config: dict[str, Any], provenance: dict[str, Any] | None,
                 summary: dict[str, Any] | None = None, step: int = 0) -> None:
        from torch.utils.tensorboard.summary import hparams

        self.writer.add_text("amst/config", code(yaml.safe_dump(config, sort_keys=False)), step)
        for key, value in (("provenance", provenance), ("summary", summary)):
            if value is not None:
                self.writer.add_text(f"amst/{key}", code(json.dumps(value, indent=1)), step)
        values = {k: v if isinstance(v, int | float | str) else as_text(v) for k, v in flattened(config).items()}
        for summary_proto in hparams(values, dict.fromkeys(HPARAM_METRICS, 0.0)):
            self.writer.file_writer.add_summary(summary_proto)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def code(text: str) -> str:
    """Text TensorBoard shows as written (its text tab reads Markdown)."""
    return "\n".join("    " + line for line in text.splitlines())


def export_run(record: RunRecord, target: Path, replace: bool) -> Path:
    """The run's folder written anew; a folder already holding its events is refused unless `replace`, which
    removes those event files (and nothing else)."""
    old = sorted(run_folder(target, record.run_id).rglob(EVENT_FILES))
    if old and not replace:
        raise ConfigError(None, f"{old[0].parent} already holds the TensorBoard events of {record.run_id}; "
                                "--replace writes them anew")
    for path in old:
        path.unlink()
    run = TensorBoardRun(target, record.run_id)
    try:
        run.describe(record.config, record.provenance, record.summary)
        run.scalars(record.points)
    finally:
        run.close()
    return run.path


class TensorBoardSink:
    """The live mirror: each epoch's points as they come (a MetricSink)."""

    def __init__(self, target: Path, run_id: str, config: dict[str, Any], provenance: dict[str, Any] | None):
        self.target, self.run_id, self.config, self.provenance = target, run_id, config, provenance
        self.run: TensorBoardRun | None = None

    def begin(self, start_epoch: int) -> None:
        self.run = TensorBoardRun(self.target, self.run_id, purge_from=start_epoch)
        self.run.describe(self.config, self.provenance, step=start_epoch)

    def write(self, points: Sequence[MetricPoint]) -> None:
        assert self.run is not None, "begin() first"
        self.run.scalars(points)

    def pending(self) -> list[MetricPoint]:
        return []

    def close(self) -> None:
        if self.run is not None:
            self.run.close()
            self.run = None
