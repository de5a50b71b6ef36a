"""Runs in the tools people already use: TensorBoard event files and MLflow tracking stores (Doc/exports.md).

After the fact, `amst export RUN... --to tensorboard DIR | mlflow URI` (`export_runs`); live, a run whose config
says `export: {tensorboard: DIR, mlflow: URI}` gets one mirror sink per target (`mirror_sinks`), after
`check_exports` has found every target writable before training. Names: amst_core.exporters.naming; where a
target may be: amst_core.exporters.targets. TensorBoard and MLflow come with the `export` extra.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from amst_core.config import ConfigError, RunConfig
from amst_core.exporters.record import read_run
from amst_core.exporters.targets import check_exports, tensorboard_folder, tracking_uri
from amst_core.metrics import MetricPoint
from amst_core.sinks import MetricSink

log = logging.getLogger(__name__)

Tool = Literal["tensorboard", "mlflow"]
TOOLS: tuple[Tool, ...] = ("tensorboard", "mlflow")
DEFAULT_EXPERIMENT = "amst"


def export_runs(refs: Sequence[str], tool: str, target: str, experiment: str = DEFAULT_EXPERIMENT,
                replace: bool = False) -> list[str]:
    """Each run copied to the target; one line per run saying where it went. The target and every run are
    checked before anything is written."""
    if tool not in TOOLS:
        raise ConfigError("--to", f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")
    records = [read_run(ref) for ref in refs]
    lines = []
    if tool == "tensorboard":
        from amst_core.exporters import tensorboard

        folder = tensorboard_folder(target, "--to tensorboard")
        for record in records:
            lines.append(f"{record.run_id} -> {tensorboard.export_run(record, folder, replace)}")
    else:
        from amst_core.exporters import mlflow

        uri = tracking_uri(target, "--to mlflow")
        for record in records:
            mlflow_run = mlflow.export_run(record, uri, experiment, replace)
            lines.append(f"{record.run_id} -> MLflow run {mlflow_run} (experiment {experiment}, {uri})")
    return lines


def mirror_sinks(cfg: RunConfig, provenance: dict[str, Any] | None, run_id: str) -> list[MetricSink]:
    """One sink per export target of the run's config (none without `export`); rank 0's only."""
    from amst_core.exporters.mlflow import MlflowSink
    from amst_core.exporters.tensorboard import TensorBoardSink

    config = cfg.model_dump(mode="json")
    sinks: list[MetricSink] = []
    if cfg.export.tensorboard is not None:
        folder = tensorboard_folder(cfg.export.tensorboard, "export.tensorboard")
        sinks.append(Mirror(TensorBoardSink(folder, run_id, config, provenance), f"TensorBoard ({folder})"))
    if cfg.export.mlflow is not None:
        uri = tracking_uri(cfg.export.mlflow, "export.mlflow")
        sink = MlflowSink(uri, cfg.export.mlflow_experiment, run_id, config, provenance)
        sinks.append(Mirror(sink, f"MLflow ({uri})"))
    return sinks


class Mirror:
    """A copy never fails the run it copies: the run's own store holds every point, and `amst export --replace`
    writes the copy anew. Its first failure is logged (the run's log says it) and it writes nothing more."""

    def __init__(self, sink: MetricSink, what: str):
        self.sink, self.what, self.broken = sink, what, False

    def begin(self, start_epoch: int) -> None:
        self.attempt("begin", lambda: self.sink.begin(start_epoch))

    def write(self, points: Sequence[MetricPoint]) -> None:
        self.attempt("write", lambda: self.sink.write(points))

    def pending(self) -> list[MetricPoint]:
        return []

    def close(self) -> None:
        self.attempt("close", self.sink.close)

    def attempt(self, step: str, action: Callable[[], None]) -> None:
        if self.broken:
            return
        try:
            action()
        except Exception as err:
            self.broken = True
            log.warning("the live export to %s failed at %s (%s: %s) and stops; the run goes on, and `amst export "
                        "--replace` copies it afterwards", self.what, step, type(err).__name__, err)


__all__ = ["Mirror", "check_exports", "export_runs", "mirror_sinks"]
