"""MLflow: each run is one MLflow run in an experiment (made if missing), found again by its tag `amst.run_id`.
Every point is a metric (named by amst_core.exporters.naming, step = epoch, its time as the timestamp), the
resolved config a parameter per dotted key (`optim.lr`), the provenance a tag per dotted key (`amst.code.commit`,
`amst.environment.torch`, ...), the summary a tag per dotted key (`amst.summary.best_val_acc`) once the run
has one. Everything goes in batches (MLflow's client splits them at its limits)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from amst_core.config import ConfigError
from amst_core.exporters.naming import TAG_PREFIX, as_text, flattened, safe_name, shortened, tag_of
from amst_core.exporters.record import RunRecord
from amst_core.extras import require
from amst_core.metrics import MetricPoint

# The limits every MLflow server keeps (MLflow 3 takes longer values; older servers refuse them): longer values
# are cut, and the run's tag amst.cut says which.
PARAM_LIMIT = 500
TAG_LIMIT = 5000
RUN_ID_TAG = TAG_PREFIX + "run_id"
# MLflow's client retries a failing request for minutes by default (7 tries, growing waits, 120 s each): a live
# mirror would hold the training that long. The user's own settings win.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class MlflowTarget:
    """One experiment of one tracking store (the URI checked by amst_core.exporters.targets first)."""

    def __init__(self, uri: str, experiment: str):
        require("mlflow", "export", "MLflow export")
        from mlflow.tracking import MlflowClient

        for name, value in HTTP_SETTINGS.items():
            os.environ.setdefault(name, value)
        self.uri, self.experiment = uri, experiment
        self.client = MlflowClient(uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)

    def find(self, run_id: str) -> str | None:
        """The (active) MLflow run of our run, if it was exported before."""
        runs = self.client.search_runs([self.experiment_id], f"tags.`{RUN_ID_TAG}` = {quoted(run_id)}",
                                       max_results=1)
        return runs[0].info.run_id if runs else None

    def start(self, run_id: str, name: str, config: dict[str, Any], provenance: dict[str, Any] | None) -> str:
        """A new MLflow run with the config as parameters and the provenance as tags; its id."""
        from mlflow.entities import Param

        params, cut = [], []
        for key, value in flattened(config).items():
            text, was_cut = shortened(as_text(value), PARAM_LIMIT)
            params.append(Param(safe_name(key), text))
            if was_cut:
                cut.append(key)
        run = self.client.create_run(self.experiment_id, run_name=name, tags={RUN_ID_TAG: run_id})
        tags = provenance_tags(provenance) | ({TAG_PREFIX + "cut": ", ".join(cut)} if cut else {})
        self.client.log_batch(run.info.run_id, params=params, tags=run_tags(tags))
        return run.info.run_id

    def metrics(self, mlflow_run: str, points: Sequence[MetricPoint]) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(mlflow_run, metrics=[Metric(tag_of(p), p.value, int(p.recorded_at * 1000), p.epoch)
                                                   for p in points])

    def history(self, mlflow_run: str) -> list[Any]:
        """Every metric point the MLflow run holds."""
        keys = self.client.get_run(mlflow_run).data.metrics
        return [m for key in keys for m in self.client.get_metric_history(mlflow_run, key)]

    def finish(self, mlflow_run: str, summary: dict[str, Any] | None) -> None:
        """Ended: FINISHED with the summary's tags, or KILLED for a run that has no summary (it did not end)."""
        if summary is not None:
            tags = {f"{TAG_PREFIX}summary.{k}": as_text(v) for k, v in flattened(summary).items()}
            self.client.log_batch(mlflow_run, tags=run_tags(tags))
        self.client.set_terminated(mlflow_run, "FINISHED" if summary is not None else "KILLED")


def quoted(value: str) -> str:
    """A string literal of MLflow's search syntax."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ConfigError(None, f"run id {value!r} holds both quote characters; MLflow's search cannot name it")


def provenance_tags(provenance: dict[str, Any] | None) -> dict[str, str]:
    from amst_core.provenance import flat

    return {TAG_PREFIX + key: value for key, value in flat(provenance).items()} if provenance else {}


def run_tags(tags: dict[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(safe_name(k), shortened(v, TAG_LIMIT)[0]) for k, v in tags.items()]


def export_run(record: RunRecord, uri: str, experiment: str, replace: bool) -> str:
    """The run as a new MLflow run; one exported before is refused unless `replace`, which deletes it first."""
    target = MlflowTarget(uri, experiment)
    old = target.find(record.run_id)
    if old is not None and not replace:
        raise ConfigError(None, f"{record.run_id} is already in MLflow ({uri}, experiment {experiment}, run {old}); "
                                "--replace exports it anew")
    if old is not None:
        target.client.delete_run(old)
    mlflow_run = target.start(record.run_id, record.name, record.config, record.provenance)
    target.metrics(mlflow_run, record.points)
    target.finish(mlflow_run, record.summary)
    return mlflow_run


class MlflowSink:
    """The live mirror: each epoch's points as they come (a MetricSink). A resumed run continues its MLflow run
    (`begin` says how repeated epochs are taken back); a run starting from epoch 0 replaces one of the same id (a
    retry that starts over)."""

    def __init__(self, uri: str, experiment: str, run_id: str, config: dict[str, Any],
                 provenance: dict[str, Any] | None):
        self.uri, self.experiment, self.run_id, self.config, self.provenance = (uri, experiment, run_id, config,
                                                                                provenance)
        self.target: MlflowTarget | None = None
        self.mlflow_run = ""

    def begin(self, start_epoch: int) -> None:
        self.target = MlflowTarget(self.uri, self.experiment)
        old = self.target.find(self.run_id)
        history = self.target.history(old) if old is not None and start_epoch > 0 else []
        kept = [m for m in history if m.step < start_epoch]
        if old is not None and history and len(kept) == len(history):  # no epoch to take back: go on in it
            self.mlflow_run = old
            self.target.client.update_run(old, status="RUNNING")
            self.target.client.log_batch(old, tags=run_tags(provenance_tags(self.provenance)))
            return
        # A start from epoch 0 replaces the MLflow run. MLflow deletes no metric point, so a resume that repeats
        # epochs moves those before start_epoch to a new MLflow run: no duplicates, no gaps.
        name = self.config.get("name") or self.run_id
        self.mlflow_run = self.target.start(self.run_id, name, self.config, self.provenance)
        if kept:
            self.target.client.log_batch(self.mlflow_run, metrics=kept)
        if old is not None:
            self.target.client.delete_run(old)

    def write(self, points: Sequence[MetricPoint]) -> None:
        assert self.target is not None, "begin() first"
        self.target.metrics(self.mlflow_run, points)

    def pending(self) -> list[MetricPoint]:
        return []

    def close(self) -> None:
        if self.target is not None:
            self.target.client.set_terminated(self.mlflow_run, "FINISHED")
            self.target = None
